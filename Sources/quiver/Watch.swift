import CQuiverOS
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

    @Flag(help: "Decode only each frame's header and scalar fields (checksum still verified), not the positions: follows the stream at little CPU cost.")
    var noDecode = false

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
        // A closed pipe is seen as EPIPE from write (below), not as a fatal signal.
        signal(SIGPIPE, SIG_IGN)
        // The options are read once: ArgumentParser's property wrappers cost a lookup per read.
        let limit = frames, format = format, noDecode = noDecode, timeout = timeout
        var count = 0
        var times: [Double] = []
        var printedTopology = false
        var line = ""
        while limit.map({ count < $0 }) ?? true {
            let index: UInt64, step: Int64, time: Double, atoms: Int, temperature: Double?, potential: Double?
            let receivedAt: Double, publishedAt: Double?
            if noDecode {
                guard let r = try client.nextSummary(timeout: timeout) else {
                    throw ValidationError("no frame within \(timeout) s from \(client.connection.endpoints["frames"] ?? "?")")
                }
                (index, step, time, atoms) = (r.summary.index, r.summary.step, r.summary.time, r.summary.atomCount)
                (temperature, potential, receivedAt, publishedAt) = (r.summary.temperature, r.summary.potentialEnergy, r.receivedAt, r.summary.publishedAt)
            } else {
                guard let r = try client.nextFrame(timeout: timeout) else {
                    throw ValidationError("no frame within \(timeout) s from \(client.connection.endpoints["frames"] ?? "?")")
                }
                let f = r.frame
                (index, step, time, atoms) = (f.index, f.step, f.time, f.atomCount)
                (temperature, potential, receivedAt, publishedAt) = (f.temperature, f.energies.potential, r.receivedAt, f.publishedAt)
            }
            count += 1
            times.append(receivedAt)
            if times.count > 30 { times.removeFirst() }
            let rate = times.count > 1 ? Double(times.count - 1) / (times.last! - times.first!) : 0
            let latencyMs = publishedAt.map { (receivedAt - $0) * 1000 }
            // One line per frame, written and flushed at once (a live tool, often piped): built
            // by appending, without print's dynamic casts or intermediate arrays.
            line.removeAll(keepingCapacity: true)
            switch format {
            case .json:
                line += "{\"frame_index\":"; line += String(index)
                line += ",\"step\":"; line += String(step)
                line += ",\"time_ps\":"; line += time.description
                line += ",\"atoms\":"; line += String(atoms)
                line += ",\"temperature\":"; line += temperature?.description ?? "null"
                line += ",\"potential_energy\":"; line += potential?.description ?? "null"
                line += ",\"frames_per_second\":"; line += fixed(rate, 3)
                line += ",\"latency_ms\":"; line += latencyMs.map { fixed($0, 3) } ?? "null"
                line += ",\"received_at\":"; line += fixed(receivedAt, 6)
                line += "}\n"
            case .table:
                if !printedTopology, let t = client.topology {
                    line += "topology: \(t.atomCount) atoms, types \(t.typeNames.joined(separator: ", "))\n"
                    printedTopology = true
                }
                line += "frame \(index)  step \(step)  T \(fixed(temperature ?? .nan, 2)) K  \(atoms) atoms  "
                line += "\(fixed(rate, 1)) frames/s  latency \(latencyMs.map { fixed($0, 2) + " ms" } ?? "?")\n"
            }
            // A reader that went away (`quiver watch | head`) ends the watch quietly; any other
            // failure to write (a full disk) is an error.
            if let failure = writeAll(STDOUT_FILENO, &line) {
                if failure == EPIPE { return }
                throw ValidationError("cannot write the output: \(String(cString: strerror(failure)))")
            }
        }
    }
}

/// Writes all of `text` to `fd` at once (no stdio buffer: each line shows up as it is made);
/// nil, or the errno that stopped it (EPIPE: the reader closed the pipe; ENOSPC: a full disk).
func writeAll(_ fd: Int32, _ text: inout String) -> Int32? {
    text.withUTF8 { bytes in
        var done = 0
        while done < bytes.count {
            let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n > 0 {
                done += n
            } else if n < 0 && (errno == EINTR || errno == EAGAIN) {
                if errno == EAGAIN { usleep(1000) }  // a non-blocking stdout that is full
            } else {
                return n < 0 ? errno : EIO
            }
        }
        return nil
    }
}

/// `value` with `digits` decimals ("%.*f"), through the C library: Foundation's String(format:)
/// costs several microseconds a call, which a line per frame pays several times.
func fixed(_ value: Double, _ digits: Int32) -> String {
    withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer in
        _ = qv_os_format_fixed(buffer.baseAddress!, 64, value, digits)
        return String(cString: buffer.baseAddress!)
    }
}
