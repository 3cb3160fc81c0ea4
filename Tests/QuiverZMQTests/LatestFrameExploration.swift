import Foundation
import QuiverZMQ
import Testing

/// The measurement behind the latest-frame choice in docs/zmq.md: a burst of 2,000 messages of
/// 100 KB, a subscriber that starts reading 0.3 s later, for several subscriber strategies. It
/// prints a table rather than asserting (the outcome of the rejected strategies depends on timing),
/// so it only runs when asked:
///
///     QUIVER_ZMQ_EXPLORE=1 swift test -c release --disable-xctest --filter LatestFrameExploration
@Suite("LatestFrameExploration", .enabled(if: ProcessInfo.processInfo.environment["QUIVER_ZMQ_EXPLORE"] != nil),
       .timeLimit(.minutes(2)))
struct LatestFrameExploration {
    struct Strategy {
        let name: String
        let publisher: [ZMQSocketOption]
        let subscriber: [ZMQSocketOption]
        let multipart: Bool
        let drain: Bool
    }

    let strategies = [
        Strategy(name: "CONFLATE, multipart", publisher: [.sendHighWaterMark(0)], subscriber: [.conflate(true)], multipart: true, drain: false),
        Strategy(name: "CONFLATE, single-part", publisher: [.sendHighWaterMark(0)], subscriber: [.conflate(true)], multipart: false, drain: false),
        Strategy(name: "CONFLATE, single-part", publisher: [.sendHighWaterMark(8)], subscriber: [.conflate(true)], multipart: false, drain: false),
        Strategy(name: "RCVHWM 1 + drain", publisher: [.sendHighWaterMark(8)], subscriber: [.receiveHighWaterMark(1)], multipart: true, drain: true),
        Strategy(name: "RCVHWM 32 + drain", publisher: [.sendHighWaterMark(0)], subscriber: [.receiveHighWaterMark(32)], multipart: true, drain: true),
        Strategy(name: "RCVHWM 32 + drain", publisher: [.sendHighWaterMark(8)], subscriber: [.receiveHighWaterMark(32)], multipart: true, drain: true),
        Strategy(name: "RCVHWM 1000 + drain", publisher: [.sendHighWaterMark(8)], subscriber: [.receiveHighWaterMark(1000)], multipart: true, drain: true),
        Strategy(name: "RCVHWM 1000, no drain", publisher: [.sendHighWaterMark(8)], subscriber: [.receiveHighWaterMark(1000)], multipart: true, drain: false),
    ]

    @Test func compare() throws {
        let count: UInt64 = 2000
        let payload = [UInt8](repeating: 7, count: 100_000)
        var rows = ["| transport | subscriber | publisher HWM | reads | first | last |", "| --- | --- | ---: | ---: | --- | --- |"]
        for transport in ["ipc", "tcp"] {
            for s in strategies {
                try withFixture { f in
                    let pub = try f.socket(.pub, s.publisher)
                    let sub = try f.socket(.sub, s.subscriber)
                    let endpoint = try pub.bind(transport == "ipc" ? try f.ipc("explore") : ZMQDefaults.loopbackAnyPort)
                    try sub.subscribe()
                    try sub.connect(endpoint)
                    try synchronise(pub: pub, sub: sub, probe: [1, 2, 3])
                    for i in 1...count {
                        if s.multipart { try pub.sendMultipart([counter(i), payload]) } else { try pub.send(counter(i) + payload) }
                    }
                    Thread.sleep(forTimeInterval: 0.3)
                    var seen: [String] = []
                    while seen.count < 3000 {
                        let parts = s.drain ? try sub.receiveLatestMultipart(timeout: .seconds(1))
                                            : try sub.receiveMultipart(timeout: .seconds(1))
                        guard let parts else { break }
                        let first = parts[0]
                        let wellFormed = s.multipart ? parts.count == 2 && first.count == 8 : first.count == 8 + payload.count
                        let label = wellFormed ? counterValue(Array(first.prefix(8))).map { "\($0)" } ?? "?"
                                               : "\(parts.count) part(s) of \(first.count) B"
                        seen.append(label)
                        if label == "\(count)" { break }
                    }
                    let hwm = s.publisher.compactMap { if case .sendHighWaterMark(let n) = $0 { return n == 0 ? "unlimited" : "\(n)" } else { return nil } }.first ?? "-"
                    rows.append("| \(transport) | \(s.name) | \(hwm) | \(seen.count) | \(seen.prefix(3).joined(separator: ", ")) | \(seen.suffix(2).joined(separator: ", ")) |")
                }
            }
        }
        print(rows.joined(separator: "\n"))
    }
}
