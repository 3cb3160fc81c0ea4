import CQuiverCore
import Foundation
import Testing

@Suite("The thermostat's normal generator")
struct RandomTests {
    @Test("standard normal moments; components and neighbouring atoms uncorrelated; keyed by seed and stream")
    func moments() {
        let n = 100_000
        var samples: [[Double]] = [[], [], []]
        var out: [Float] = [0, 0, 0]
        for i in 0..<n {
            qv_gaussian3(42, 7, UInt64(i), &out)
            for c in 0..<3 { samples[c].append(Double(out[c])) }
        }
        for c in 0..<3 {
            let x = samples[c]
            let mean = x.reduce(0, +) / Double(n)
            let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
            let kurtosis = x.reduce(0) { $0 + pow($1 - mean, 4) } / Double(n) / (variance * variance)
            let tail = Double(x.filter { abs($0) > 3 }.count) / Double(n) // 0.0027 for a normal
            #expect(abs(mean) < 0.015, "component \(c): mean \(mean)")
            #expect(abs(variance - 1) < 0.02, "component \(c): variance \(variance)")
            #expect(abs(kurtosis - 3) < 0.1, "component \(c): kurtosis \(kurtosis)")
            #expect(tail > 0.0020 && tail < 0.0035, "component \(c): P(|x| > 3) = \(tail)")
        }
        func correlation(_ a: ArraySlice<Double>, _ b: ArraySlice<Double>) -> Double {
            let ma = a.reduce(0, +) / Double(a.count), mb = b.reduce(0, +) / Double(b.count)
            var s = 0.0, sa = 0.0, sb = 0.0
            for (x, y) in zip(a, b) { s += (x - ma) * (y - mb); sa += (x - ma) * (x - ma); sb += (y - mb) * (y - mb) }
            return s / (sa * sb).squareRoot()
        }
        #expect(abs(correlation(samples[0][...], samples[1][...])) < 0.015)
        #expect(abs(correlation(samples[0][...], samples[2][...])) < 0.015)
        #expect(abs(correlation(samples[0].dropFirst(), samples[0].dropLast())) < 0.015, "neighbouring atoms")
        var a: [Float] = [0, 0, 0], b: [Float] = [0, 0, 0], c: [Float] = [0, 0, 0]
        qv_gaussian3(42, 7, 5, &a)
        qv_gaussian3(43, 7, 5, &b)
        qv_gaussian3(42, 8, 5, &c)
        #expect(a != b && a != c, "another seed or step must give other numbers")
        qv_gaussian3(42, 7, 5, &b)
        #expect(a == b, "the same key gives the same numbers")
    }
}
