import CQuiverShm
import QuiverModel

/// The lifecycle state of a worker, as stored in the status table.
public enum WorkerState: UInt32, Sendable, CaseIterable {
    case empty = 0, spawned = 1, ready = 2, stopping = 3, exited = 4, failed = 5
}

/// The worker status table of a segment (`segment.workers`): one entry per worker (pid, state,
/// progress counter and heartbeat, restarts, role and name), every access atomic.
public struct WorkerTable: Sendable {
    let mapping: Mapping
    /// Entries, from this process's own layout.
    public let capacity: Int

    /// The status entry of worker `index` (0 ..< capacity; an index beyond is a programming error).
    public subscript(index: Int) -> WorkerStatus {
        precondition(index >= 0 && index < capacity, "worker index \(index) out of 0..<\(capacity)")
        return WorkerStatus(mapping: mapping, index: UInt32(index))
    }
}

/// A view of one entry of the worker status table; every access is atomic. A state value the
/// table does not know (another process wrote over it) reads as `.failed`.
public struct WorkerStatus: Sendable {
    let mapping: Mapping
    let index: UInt32

    public var pid: Int32 {
        get { mapping.with { qv_shm_worker_pid($0, index) } }
        nonmutating set { mapping.with { qv_shm_worker_set_pid($0, index, newValue) } }
    }
    public var state: WorkerState {
        get { WorkerState(rawValue: mapping.with { qv_shm_worker_state($0, index) }) ?? .failed }
        nonmutating set { mapping.with { qv_shm_worker_set_state($0, index, newValue.rawValue) } }
    }
    public var progress: UInt64 { mapping.with { qv_shm_worker_progress($0, index) } }
    /// CLOCK_MONOTONIC nanoseconds of the last `advance()`.
    public var heartbeatNanoseconds: UInt64 { mapping.with { qv_shm_worker_heartbeat_ns($0, index) } }
    public var restarts: UInt32 {
        get { mapping.with { qv_shm_worker_restarts($0, index) } }
        nonmutating set { mapping.with { qv_shm_worker_set_restarts($0, index, newValue) } }
    }
    public var role: UInt32 { mapping.with { qv_shm_worker_role($0, index) } }
    /// The name (at most 31 bytes; invalid UTF-8 repaired).
    public var name: String {
        var buffer = [CChar](repeating: 0, count: 32)
        mapping.with { qv_shm_worker_name($0, index, &buffer) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    public func setIdentity(role: UInt32, name: String) { mapping.with { qv_shm_worker_set_identity($0, index, role, name) } }
    /// Counts one unit of progress and stamps the heartbeat.
    public func advance() { mapping.with { qv_shm_worker_advance($0, index, SystemClock.monotonicNanoseconds) } }
}
