import ArgumentParser
import Foundation
import QuiverModel
import QuiverSharedMemory

/// Tools for reliability tests and diagnosis; not part of the stable interface.
struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Diagnostic tools used by the reliability tests.",
        shouldDisplay: false,
        subcommands: [ShmWriter.self, ShmReader.self, InteractionLatency.self])
}

/// The pattern a test writer fills frame `index` with, and a reader checks: exact small integers.
enum FramePattern {
    static func value(_ index: UInt64, _ atom: Int, _ component: Int) -> Float {
        Float((index &* 2_654_435_761 &+ UInt64(atom) &* 3 &+ UInt64(component)) % 1_000_003)
    }

    static func fill(_ frame: inout FrameRecord, index: UInt64, atoms: Int) {
        frame.index = index
        frame.step = index * 10
        frame.time = Double(index)
        frame.box = SIMD3(Double(index % 97), 1, 2)
        frame.x = (0..<atoms).map { value(index, $0, 0) }
        frame.y = (0..<atoms).map { value(index, $0, 1) }
        frame.z = (0..<atoms).map { value(index, $0, 2) }
    }

    static func check(_ frame: FrameRecord) -> Bool {
        check(index: frame.index, step: frame.step, time: frame.time, box: frame.box, x: frame.x, y: frame.y, z: frame.z)
    }

    /// The same check on a frame read in place (the arrays still in the slot).
    static func check(_ frame: FrameView) -> Bool {
        let s = frame.scalars
        return check(index: s.index, step: s.step, time: s.time, box: s.box, x: frame.positions.x, y: frame.positions.y, z: frame.positions.z)
    }

    static func check<A: Collection<Float>>(index i: UInt64, step: UInt64, time: Double, box: SIMD3<Double>, x: A, y: A, z: A) -> Bool
        where A.Index == Int {
        guard step == i * 10, time == Double(i), box.x == Double(i % 97), y.count == x.count, z.count == x.count else { return false }
        for a in 0..<x.count {
            if x[a] != value(i, a, 0) || y[a] != value(i, a, 1) || z[a] != value(i, a, 2) { return false }
        }
        return true
    }
}

struct ShmWriter: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "shm-writer", abstract: "Publish pattern frames into a segment's ring.")

    @Option var name: String
    @Option var directory: String = "/dev/shm"
    @Option var atoms: Int = 20000
    @Option var slots: Int = 4
    @Flag(help: "Create the segment (otherwise open it and continue after the last published frame).")
    var create = false
    @Option(help: "Stop after this many seconds (0: run until killed).")
    var seconds: Double = 0
    @Option(help: "Pause between frames, microseconds.")
    var intervalUs: Int = 0

    func run() throws {
        let segment = create
            ? try SharedSegment.create(name: name, directory: directory, layout: SegmentLayout(atomCapacity: atoms, slotCount: slots))
            : try SharedSegment.open(name: name, directory: directory)
        var frame = FrameRecord()
        var index = segment.frames.published
        let start = SystemClock.monotonicSeconds
        while seconds == 0 || SystemClock.monotonicSeconds - start < seconds {
            FramePattern.fill(&frame, index: index, atoms: atoms)
            try segment.frames.publish(frame)
            index += 1
            if intervalUs > 0 { usleep(useconds_t(intervalUs)) }
        }
        print("{\"frames_published\":\(segment.frames.published)}")
    }
}

struct ShmReader: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "shm-reader", abstract: "Read the newest frames and verify every accepted one.")

    @Option var name: String
    @Option var directory: String = "/dev/shm"
    @Option var seconds: Double = 2
    @Flag(help: "Read in place (SharedSegment.withFrame, as the broadcaster does) instead of copying; the pattern is checked on the slot itself, and only results the seqlock accepts count.")
    var inPlace = false
    @Option(help: "Read this many frames behind the newest: 2 on a 4-slot ring reads the slot the writer fills next, so the writer often overwrites a frame while it is being read (a harder test of the seqlock).")
    var lag: UInt64 = 0

    func run() throws {
        let start = SystemClock.monotonicSeconds
        var segment: SharedSegment?
        while segment == nil && SystemClock.monotonicSeconds - start < seconds {
            segment = try? SharedSegment.open(name: name, directory: directory)
            if segment == nil { usleep(1000) }
        }
        guard let segment else { throw ValidationError("segment \(name) did not appear") }
        var counts: [String: Int] = ["reads": 0, "bad": 0, "went_back": 0, "empty": 0, "busy": 0, "torn": 0, "lapped": 0, "abandoned": 0, "corrupt": 0]
        var frame = FrameRecord()
        var last: UInt64?
        while SystemClock.monotonicSeconds - start < seconds {
            let published = segment.frames.published
            guard published > lag else { counts["empty", default: 0] += 1; usleep(100); continue }
            let wanted = published - 1 - lag
            do {
                let (index, good): (UInt64, Bool)
                if inPlace {
                    (index, good) = try segment.frames.withFrame(wanted) { ($0.scalars.index, FramePattern.check($0)) }.get()
                } else {
                    try segment.frames.read(wanted, into: &frame)
                    (index, good) = (frame.index, FramePattern.check(frame))
                }
                counts["reads", default: 0] += 1
                if !good { counts["bad", default: 0] += 1 }
                if let l = last, index < l { counts["went_back", default: 0] += 1 }
                last = index
            } catch {
                let key: String
                switch error {
                case .empty: key = "empty"
                case .busy: key = "busy"
                case .torn: key = "torn"
                case .lapped: key = "lapped"
                case .abandoned: key = "abandoned"
                case .corrupt: key = "corrupt"
                }
                counts[key, default: 0] += 1
            }
        }
        counts["last_index"] = Int(last ?? 0)
        print("{" + counts.keys.sorted().map { "\"\($0)\":\(counts[$0]!)" }.joined(separator: ",") + "}")
    }
}
