import CZeroMQ

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The one error type of this module: a libzmq (or system) errno, the call that failed, and the
/// text `zmq_strerror` gives for it.
///
/// Callers act on the code; the named constants below are the ones worth acting on. Two errors
/// compare equal when their codes are equal (`operation` is context for messages only), so both
/// `error == .addressInUse` and `catch ZMQError.hostUnreachable` work.
///
/// `EINTR` never reaches a caller: every blocking call is retried when a signal interrupts it.
public struct ZMQError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The errno value (a system errno, or one of libzmq's own such as `ETERM` and `EFSM`).
    public let code: Int32
    /// The libzmq function (or wrapper check) that failed, e.g. `zmq_bind`.
    public let operation: String

    public init(code: Int32, operation: String = "") {
        self.code = code
        self.operation = operation
    }

    /// `zmq_strerror`'s text for the code.
    public var message: String { String(cString: zmq_strerror(code)) }

    public var description: String {
        operation.isEmpty ? "\(message) (errno \(code))" : "\(operation): \(message) (errno \(code))"
    }

    public static func == (a: ZMQError, b: ZMQError) -> Bool { a.code == b.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// Lets `catch ZMQError.again` match a thrown error of this type with the same code.
    public static func ~= (pattern: ZMQError, value: any Error) -> Bool {
        (value as? ZMQError)?.code == pattern.code
    }

    // MARK: Codes callers act on

    /// EAGAIN: nothing to receive / cannot queue now (non-blocking call, or the socket's send or
    /// receive timeout expired). The wrapper's `try...` and `timeout:` variants turn it into `nil`
    /// or `false`; blocking calls throw it when `ZMQ_SNDTIMEO` / `ZMQ_RCVTIMEO` expire.
    public static let again = ZMQError(code: EAGAIN)
    /// EINTR: a signal interrupted a blocking call. Retried internally; listed for completeness.
    public static let interrupted = ZMQError(code: EINTR)
    /// ETERM: the socket's context was shut down or terminated; close the socket.
    public static let terminated = ZMQError(code: ZMQ_HAUSNUMERO + 53)
    /// EFSM: the socket is in the wrong state for the call (REQ sending twice, REP replying first).
    public static let invalidState = ZMQError(code: ZMQ_HAUSNUMERO + 51)
    /// ENOCOMPATPROTO: the transport does not suit the socket type.
    public static let incompatibleProtocol = ZMQError(code: ZMQ_HAUSNUMERO + 52)
    /// EMTHREAD: no I/O thread available.
    public static let noIOThread = ZMQError(code: ZMQ_HAUSNUMERO + 54)
    /// EHOSTUNREACH: a ROUTER with `routerMandatory` has no peer with that routing id.
    public static let hostUnreachable = ZMQError(code: EHOSTUNREACH)
    /// EMSGSIZE: a message is too large for the operation.
    public static let messageTooLarge = ZMQError(code: EMSGSIZE)
    /// EADDRINUSE: the TCP port (or other address) is taken.
    public static let addressInUse = ZMQError(code: EADDRINUSE)
    /// EADDRNOTAVAIL: the address is not local (bind), or no such address.
    public static let addressNotAvailable = ZMQError(code: EADDRNOTAVAIL)
    /// EINVAL: an invalid endpoint, option or argument.
    public static let invalidArgument = ZMQError(code: EINVAL)
    /// EPROTONOSUPPORT: the endpoint's transport (`foo://`) is not supported.
    public static let protocolNotSupported = ZMQError(code: EPROTONOSUPPORT)
    /// ENOTSUP: the operation is not supported by this socket type (e.g. receive on PUB).
    public static let notSupported = ZMQError(code: ENOTSUP)
    /// ENOTSOCK: the socket was closed (or never valid).
    public static let notSocket = ZMQError(code: ENOTSOCK)
    /// ENODEV: the endpoint names a network interface that does not exist.
    public static let noDevice = ZMQError(code: ENODEV)
    /// ENAMETOOLONG: an `ipc://` path longer than a UNIX socket address holds.
    public static let nameTooLong = ZMQError(code: ENAMETOOLONG)
    /// ENOENT: no such endpoint (e.g. `unbind`/`disconnect` of one never bound or connected).
    public static let noSuchEndpoint = ZMQError(code: ENOENT)
    /// EMFILE: the process or context has too many sockets or files open.
    public static let tooManyOpenFiles = ZMQError(code: EMFILE)
    /// ENOMEM: an allocation failed.
    public static let outOfMemory = ZMQError(code: ENOMEM)
    /// EFAULT: an invalid context, socket or message (a closed context, for instance).
    public static let fault = ZMQError(code: EFAULT)
}

// MARK: - The one place a libzmq call is checked

/// Runs one libzmq call that returns -1 and sets errno on failure; retries when a signal
/// interrupted it (EINTR) and throws every other failure as a `ZMQError`. Returns the call's
/// (non-negative) result.
@inline(__always) @discardableResult
func zmqCall(_ operation: String, _ body: () -> Int32) throws(ZMQError) -> Int32 {
    while true {
        let rc = body()
        if rc != -1 { return rc }
        let code = zmq_errno()
        if code == EINTR { continue }
        throw ZMQError(code: code, operation: operation)
    }
}

/// As `zmqCall`, for a call that returns NULL and sets errno on failure.
@inline(__always)
func zmqCall(_ operation: String, _ body: () -> UnsafeMutableRawPointer?) throws(ZMQError) -> UnsafeMutableRawPointer {
    while true {
        if let pointer = body() { return pointer }
        let code = zmq_errno()
        if code == EINTR { continue }
        throw ZMQError(code: code, operation: operation)
    }
}

/// As `zmqCall`, for a call that may fail with EAGAIN as an expected outcome (a non-blocking send
/// or receive, or a send/receive timeout): returns `nil` then, the call's result otherwise.
@inline(__always)
func zmqCallUnlessAgain(_ operation: String, _ body: () -> Int32) throws(ZMQError) -> Int32? {
    while true {
        let rc = body()
        if rc != -1 { return rc }
        let code = zmq_errno()
        if code == EINTR { continue }
        if code == EAGAIN { return nil }
        throw ZMQError(code: code, operation: operation)
    }
}
