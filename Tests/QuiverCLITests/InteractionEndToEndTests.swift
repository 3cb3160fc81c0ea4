import Foundation
import QuiverControl
import Testing

@Suite("Control end to end: interaction to frame, the frame-rate cap, velocities redrawn when a pull ends", .serialized)
struct InteractionEndToEndTests {
    @Test("quiver debug interaction-latency: each sample's first frame past the applied step carries the user forces, within two frame boundaries and three frames of the send")
    func interactionLatency() throws {
        let server = try TestServer(["--cells", "4", "--frame-interval", "10"])
        // 1000 steps/s, a frame every 10 ms: a 256-atom engine left alone publishes faster than the
        // broadcaster polls, and frames it skips would count as late.
        #expect(try server.commandClient().send("set", args: ["values": ["max_steps_per_second": 1000]]).isOK)
        let r = try QuiverProcess.run(["debug", "interaction-latency", server.directory.path + "/connection.json",
                                       "--samples", "8", "--timeout", "5", "--format", "json"], timeout: 60)
        #expect(r.status == 0, "stderr: \(r.stderr)\nstdout: \(r.stdout)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect(result["atoms"] as? Int == 256 && result["frame_interval"] as? Int == 10)
        let samples = try #require(result["samples"] as? [[String: Any]])
        #expect(samples.count == 8)
        for s in samples {
            #expect(s["failure"] == nil, "\(s)")
            let applied = try #require(s["applied_step"] as? Int)
            let forces = try #require(s["forces"] as? [String: Any], "\(s)")
            let positions = try #require(s["positions"] as? [String: Any], "\(s)")
            // The frame after the applied step shows the user forces; the one after that is the
            // first whose positions were integrated with them.
            #expect((forces["step"] as? Int ?? 0) > applied, "\(s)")
            #expect((positions["step"] as? Int ?? 0) > applied + 1, "\(s)")
            #expect((forces["user_forces"] as? Int ?? 0) >= 4 && (positions["user_forces"] as? Int ?? 0) >= 4, "\(s)")
            #expect((forces["boundaries_late"] as? Int ?? 99) <= 2, "the user forces came more than two frames late: \(s)")
            #expect((positions["boundaries_late"] as? Int ?? 99) <= 3, "the moved positions came more than three frames late: \(s)")
            // Counted from the send, so a command applied late shows too (1: the next frame published).
            #expect((forces["frames_after_send"] as? Int ?? 99) <= 3, "the user forces came more than three frames after the send: \(s)")
        }
    }
}
