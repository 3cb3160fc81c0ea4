import CZeroMQ
import Foundation

/// A libzmq context: the I/O threads and the registry of sockets. Create one per process, after
/// the process has started (in `main` or a worker's entry point, never in a static initialiser).
///
/// **Never across fork.** A context (and every socket of it) belongs to the process that created
/// it. A forked child without exec must not use, close or even deinitialise its parent's context:
/// the I/O threads do not exist in the child. Quiver starts workers with `posix_spawn` of its own
/// executable, and each worker creates its own context.
///
/// **Thread safety.** libzmq contexts are thread-safe, so this class is `@unchecked Sendable`:
/// the handle never changes while the context is open, and `close()` / `socket(...)` serialise on
/// a lock so that a socket is never created in a context being terminated. Sockets are not
/// thread-safe (see `ZMQSocket`).
///
/// **Lifetime.** Every socket keeps its context alive, so a context is only deinitialised after
/// all its sockets are. `close()` (or `deinit`) terminates it with `zmq_ctx_term`, which waits until
/// every socket of the context is closed and, for each, its pending outgoing messages are sent or
/// its linger period has expired. With the defaults here (linger bounded, 0 in tests, and
/// `ZMQ_BLOCKY` off) termination never waits for unsent messages beyond the linger period.
public final class ZMQContext: @unchecked Sendable {
    private let lock = NSLock()
    /// nil once closed. Guarded by `lock`.
    private var handle: UnsafeMutableRawPointer?

    /// Creates a context with `ioThreads` I/O threads (one is plenty below ~1 GB/s per context).
    /// Sets `ZMQ_BLOCKY` to 0, so sockets that are never given a linger get 0 rather than
    /// libzmq's "forever".
    /// - Throws: `ZMQError` if libzmq cannot create the context or rejects a setting.
    public init(ioThreads: Int = ZMQDefaults.ioThreads) throws(ZMQError) {
        let context = try zmqCall("zmq_ctx_new") { zmq_ctx_new() }
        do throws(ZMQError) {
            try zmqCall("zmq_ctx_set(ZMQ_IO_THREADS)") { zmq_ctx_set(context, ZMQ_IO_THREADS, Int32(clamping: ioThreads)) }
            try zmqCall("zmq_ctx_set(ZMQ_BLOCKY)") { zmq_ctx_set(context, ZMQ_BLOCKY, 0) }
        } catch {
            _ = zmq_ctx_term(context)
            throw error
        }
        handle = context
    }

    deinit {
        if let handle { Self.terminate(handle) }
    }

    /// Creates a socket of this context; the same as `ZMQSocket(context: self, type:, options:)`.
    public func socket(_ type: ZMQSocket.SocketType,
                       options: [ZMQSocketOption] = ZMQDefaults.socketOptions) throws(ZMQError) -> ZMQSocket {
        try ZMQSocket(context: self, type: type, options: options)
    }

    /// Makes every blocking call on this context's sockets, in any thread, fail with
    /// `ZMQError.terminated`, and every later call too (`zmq_ctx_shutdown`). Sockets must still be
    /// closed, then the context closed. Does nothing once the context is closed.
    public func shutdown() throws(ZMQError) {
        lock.lock()
        defer { lock.unlock() }
        guard let handle else { return }
        try zmqCall("zmq_ctx_shutdown") { zmq_ctx_shutdown(handle) }
    }

    /// Terminates the context (`zmq_ctx_term`, retried on EINTR). Blocks until every socket of the
    /// context is closed (by its owner, possibly in another thread) and their linger periods are
    /// over: close or release all sockets first. Idempotent.
    public func close() {
        lock.lock()
        let handle = self.handle
        self.handle = nil
        lock.unlock()
        if let handle { Self.terminate(handle) }
    }

    /// Whether `close()` has been called.
    public var isClosed: Bool {
        lock.lock()
        defer { lock.unlock() }
        return handle == nil
    }

    /// Runs `body` with the open context handle under the lock (socket creation).
    func withHandle<R>(_ body: (UnsafeMutableRawPointer) throws(ZMQError) -> R) throws(ZMQError) -> R {
        lock.lock()
        defer { lock.unlock() }
        guard let handle else { throw ZMQError(code: ZMQError.terminated.code, operation: "ZMQContext (closed)") }
        return try body(handle)
    }

    private static func terminate(_ handle: UnsafeMutableRawPointer) {
        // zmq_ctx_term only fails with EINTR (retried by zmqCall) or EFAULT (an invalid handle,
        // which this class never passes), so there is nothing left to report.
        _ = try? zmqCall("zmq_ctx_term") { zmq_ctx_term(handle) }
    }
}
