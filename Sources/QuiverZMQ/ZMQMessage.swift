import CZeroMQ
import Foundation

/// One message part owned by this value: a `zmq_msg_t` initialised on creation and closed when the
/// value ends (`deinit`), on every path.
///
/// This is the zero-copy path. Build a part in place with `init(count:)` and
/// `withUnsafeMutableBytes` (e.g. compress straight into it) and `send` it: libzmq takes the buffer
/// over without copying. A received `ZMQMessage` is read in place with `withUnsafeBytes`.
/// `copy()` shares the buffer (reference counted by libzmq) to send one payload on several sockets;
/// do not modify a buffer after copying it.
///
/// Non-copyable, so exactly one owner closes it; `Sendable`, since a uniquely owned message may
/// move between threads (libzmq's reference counts are atomic).
public struct ZMQMessage: ~Copyable, @unchecked Sendable {
    /// Heap storage for the `zmq_msg_t`, so its address never changes while libzmq uses it.
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    /// An empty part (`zmq_msg_init`), e.g. to receive into.
    public init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: zmq_msg_t())
        zmq_msg_init(pointer)  // cannot fail
    }

    /// A part of `count` uninitialised bytes (`zmq_msg_init_size`), to fill with
    /// `withUnsafeMutableBytes` before sending.
    /// - Throws: `ZMQError.outOfMemory` when the buffer cannot be allocated.
    public init(count: Int) throws(ZMQError) {
        let pointer = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        pointer.initialize(to: zmq_msg_t())
        do throws(ZMQError) {
            try zmqCall("zmq_msg_init_size") { zmq_msg_init_size(pointer, count) }
        } catch {
            pointer.deallocate()
            throw error
        }
        self.pointer = pointer
    }

    /// A part holding a copy of `bytes`.
    public init<Bytes: ContiguousBytes>(copying bytes: Bytes) throws(ZMQError) {
        let count = bytes.withUnsafeBytes { $0.count }
        try self.init(count: count)
        withUnsafeMutableBytes { destination in
            bytes.withUnsafeBytes { source in
                if let base = source.baseAddress, count > 0 { destination.baseAddress?.copyMemory(from: base, byteCount: count) }
            }
        }
    }

    /// A part made of the `count` bytes at `bytes`, without copying them (`zmq_msg_init_data`).
    /// The bytes must stay valid and unchanged until libzmq is done with them, which it says by
    /// calling `release` once, on any thread (its I/O thread, or this one when the message is
    /// closed unsent): after the last socket sent the part and the last `copy()` of it closed.
    /// Use it to send a buffer that is reused afterwards (`release` hands it back to its pool).
    /// - Throws: `ZMQError.outOfMemory` (then `release` has not been called and will not be).
    public init(bytes: UnsafeRawPointer, count: Int, release: @escaping @Sendable () -> Void) throws(ZMQError) {
        let pointer = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
        pointer.initialize(to: zmq_msg_t())
        let hint = Unmanaged.passRetained(ReleaseAction(release)).toOpaque()
        do throws(ZMQError) {
            try zmqCall("zmq_msg_init_data") {
                zmq_msg_init_data(pointer, UnsafeMutableRawPointer(mutating: bytes), count, { _, hint in
                    guard let hint else { return }
                    Unmanaged<ReleaseAction>.fromOpaque(hint).takeRetainedValue().run()
                }, hint)
            }
        } catch {
            Unmanaged<ReleaseAction>.fromOpaque(hint).release()
            pointer.deallocate()
            throw error
        }
        self.pointer = pointer
    }

    deinit {
        zmq_msg_close(pointer)  // fails only for an invalid message, which this type never holds
        pointer.deallocate()
    }

    /// The size in bytes.
    public var count: Int { zmq_msg_size(pointer) }

    /// After a receive: whether more parts of the same message follow.
    public var hasMore: Bool { zmq_msg_more(pointer) != 0 }

    /// For a part received over TCP or ipc: the file descriptor of the connection it came from
    /// (ZMQ_SRCFD); nil otherwise. Valid while that connection is open: libzmq closes it, and the
    /// number may be reused, once the connection ends.
    public var sourceDescriptor: Int32? {
        let fd = zmq_msg_get(pointer, ZMQ_SRCFD)
        return fd >= 0 ? fd : nil
    }

    /// Reads the bytes in place. The buffer is valid only inside `body`.
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer)))
    }

    /// Writes the bytes in place (before sending). The buffer is valid only inside `body`.
    public mutating func withUnsafeMutableBytes<R, E: Error>(_ body: (UnsafeMutableRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: zmq_msg_size(pointer)))
    }

    /// A copy of the bytes as an array.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// A copy of the bytes as `Data`.
    public var data: Data { withUnsafeBytes { Data($0) } }

    /// Another part sharing this one's buffer (`zmq_msg_copy`: no bytes are copied).
    public func copy() throws(ZMQError) -> ZMQMessage {
        let other = ZMQMessage()
        try zmqCall("zmq_msg_copy") { zmq_msg_copy(other.pointer, pointer) }
        return other
    }
}

/// The release of a `ZMQMessage(bytes:count:release:)`, kept alive by libzmq until it calls it.
private final class ReleaseAction: Sendable {
    let run: @Sendable () -> Void
    init(_ run: @escaping @Sendable () -> Void) { self.run = run }
}
