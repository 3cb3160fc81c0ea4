import ArgumentParser
import Foundation
import QuiverClient

struct Watch: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive a run's frames and print one line per frame (index, step, temperature, frames/s, latency).")

    @Argument(help: "The run's connection file.")
    var connectionFile: String = "quiver-run/connection.json"

    @Option(help: "Stop after this many frames (default: until interrupted).")
    var frames: Int?

    @Option(help: "Output: table or json (one object per frame, one per line).")
    var format: OutputFormat = .table

    @Option(help: "Transport: tcp or ipc.")
    var transport: String = "tcp"

    @Option(help: "Give up when no frame arrives for this many seconds.")
    var timeout: Double = 10

    func validate() throws {
        if let frames { guard frames >= 1 else { throw ValidationError("--frames must be >= 1") } }
        guard transport == "tcp" || transport == "ipc" else { throw ValidationError("--transport must be tcp or ipc") }
        guard timeout > 0 && timeout <= 86400 else { throw ValidationError("--timeout must be between 0 and 86400 seconds") }
    }

    func run() throws {
        let client: QuiverClient
        do {
            client = try QuiverClient(connectionFile: connectionFile, transport: transport == "ipc" ? .ipc : .tcp)
        } catch {
            throw ValidationError("cannot connect with \(connectionFile): \(error)")
        }
        var count = 0
        var times: [Double] = []
        var printedTopology = false
        while frames.map({ count < $0 }) ?? true {
            guard let r = try client.nextFrame(timeout: timeout) else {
                throw ValidationError("no frame within \(timeout) s from \(client.connection.endpoints["frames"] ?? "?")")
            }
            count += 1
            times.append(r.receivedAt)
            if times.count > 30 { times.removeFirst() }
            let rate = times.count > 1 ? Double(times.count - 1) / (times.last! - times.first!) : 0
            let f = r.frame
            let latencyMs = r.latency.map { $0 * 1000 }
            switch format {
            case .json:
                var fields = ["\"frame_index\":\(f.index)", "\"step\":\(f.step)", "\"time_ps\":\(f.time)", "\"atoms\":\(f.atomCount)",
                              "\"temperature\":\(f.temperature)", "\"potential_energy\":\(f.energies.potential)",
                              "\"frames_per_second\":\(String(format: "%.3f", rate))"]
                fields.append("\"latency_ms\":" + (latencyMs.map { String(format: "%.3f", $0) } ?? "null"))
                print("{" + fields.joined(separator: ",") + "}")
            case .table:
                if !printedTopology, let t = client.topology {
                    print("topology: \(t.atomCount) atoms, types \(t.typeNames.joined(separator: ", "))")
                    printedTopology = true
                }
                print("frame \(f.index)  step \(f.step)  T \(String(format: "%.2f", f.temperature)) K  \(f.atomCount) atoms  "
                      + "\(String(format: "%.1f", rate)) frames/s  latency \(latencyMs.map { String(format: "%.2f ms", $0) } ?? "?")")
            }
            fflush(nil)
        }
    }
}
