import Foundation
import QuiverControl
import QuiverZMQ
import Testing

/// A fixed 32-byte key: 00 01 02 ... 1f.
let testKeyHex = (0..<32).map { String(format: "%02x", $0) }.joined()
/// Another key.
let otherKeyHex = String(repeating: "ab", count: 32)

func makeSigner(_ hex: String = testKeyHex) throws -> CommandSigner { try CommandSigner(keyHex: hex) }

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A well-formed request at `time`.
func request(_ command: String = "play", args: [String: JSONValue] = [:], id: String = "r1", client: String = "alice",
             nonce: String = "00112233445566778899aabbccddeeff", time: Double = 1_000_000) -> CommandRequest {
    CommandRequest(id: id, client: client, nonce: nonce, time: time, command: command, args: args)
}

/// Frames of a body signed with `signer`.
func signed(_ body: [UInt8], _ signer: CommandSigner) -> [[UInt8]] { [body, signer.signature(for: body)] }

/// Thread-safe storage for a value produced on another thread.
final class Locked<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.lock(); defer { lock.unlock() }; return stored }
        set { lock.lock(); defer { lock.unlock() }; stored = newValue }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// What the test server does with a verified request.
enum ServerAction: Sendable {
    /// Sign and send this reply.
    case reply(CommandReply)
    /// Send nothing (the client times out).
    case ignore
    /// Send this reply signed with another key.
    case forge(CommandReply)
    /// Send these frames after the routing id, as they are.
    case raw([[UInt8]])
}

/// A real ROUTER in a thread of this process, bound to an `ipc://` endpoint in a private temporary
/// directory: it verifies each request with `RequestVerifier` (replying with the error when that
/// fails) and otherwise does what `handler` says. `stop()` joins the thread and removes the directory.
final class TestServer: @unchecked Sendable {
    let context: ZMQContext
    let endpoint: String
    let directory: String
    private let stopFlag = Locked(false)
    private let done = DispatchSemaphore(value: 0)
    /// Every request the server verified, in order.
    let received = Locked<[CommandRequest]>([])
    /// Every verification failure, in order.
    let rejected = Locked<[ControlError]>([])

    init(keyHex: String = testKeyHex, window: Double = ControlDefaults.replayWindow,
         handler: @escaping @Sendable (CommandRequest) -> ServerAction) throws {
        context = try ZMQContext()
        var template = Array("/tmp/quiver-control-XXXXXX".utf8CString)
        guard let path = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            context.close()
            throw TestFailure("mkdtemp failed")
        }
        directory = String(cString: path)
        endpoint = try ZMQDefaults.ipcEndpoint(.control, in: directory)
        let signer = try CommandSigner(keyHex: keyHex)
        let forger = try CommandSigner(keyHex: otherKeyHex)
        let ready = DispatchSemaphore(value: 0)
        let startError = Locked<String?>(nil)
        let (context, endpoint, stopFlag, done, received, rejected) = (context, endpoint, stopFlag, done, received, rejected)
        let thread = Thread {
            defer { done.signal() }
            let router: ZMQSocket
            do {
                router = try context.socket(.router, options: ControlDefaults.serverSocketOptions + [.linger(.zero)])
                try router.bind(endpoint)
            } catch {
                startError.value = "\(error)"
                ready.signal()
                return
            }
            defer { router.close() }
            ready.signal()
            var verifier = RequestVerifier(signer: signer, window: window)
            while !stopFlag.value {
                guard let frames = try? router.receiveMultipart(timeout: .milliseconds(10)), frames.count >= 1 else { continue }
                let identity = frames[0]
                let reply: [[UInt8]]
                switch verifier.verify(frames: Array(frames.dropFirst()), now: Date().timeIntervalSince1970) {
                case .failure(let error):
                    rejected.value.append(error)
                    reply = CommandReply.failure(error).frames(signedWith: signer)
                case .success(let request):
                    received.value.append(request)
                    switch handler(request) {
                    case .reply(let r): reply = r.frames(signedWith: signer)
                    case .ignore: continue
                    case .forge(let r): reply = r.frames(signedWith: forger)
                    case .raw(let frames): reply = frames
                    }
                }
                _ = try? router.sendMultipart([identity] + reply, timeout: .seconds(1))
            }
        }
        thread.start()
        ready.wait()
        if let message = startError.value {
            done.wait()
            context.close()
            try? FileManager.default.removeItem(atPath: directory)
            throw TestFailure("test server: \(message)")
        }
    }

    func stop() {
        stopFlag.value = true
        done.wait()
        context.close()
        try? FileManager.default.removeItem(atPath: directory)
    }
}

/// Runs `body` with a server and a client connected to it (timeout `timeout`), and tears both down.
func withServer<R>(timeout: Duration = .seconds(5), clientID: String = "alice",
                   handler: @escaping @Sendable (CommandRequest) -> ServerAction,
                   _ body: (CommandClient, TestServer) throws -> R) throws -> R {
    let server = try TestServer(handler: handler)
    defer { server.stop() }
    let client = try CommandClient(endpoint: server.endpoint, keyHex: testKeyHex, clientID: clientID, timeout: timeout)
    defer { client.close() }
    return try body(client, server)
}

/// An echo handler: replies ok with {"command": ..., "args": ...}.
let echo: @Sendable (CommandRequest) -> ServerAction = { request in
    .reply(.success(id: request.id, ["command": .string(request.command), "args": .object(request.args)]))
}

/// The error a throwing call threw, as a ControlError.
func controlError(_ body: () throws -> Void) -> ControlError? {
    do {
        try body()
        return nil
    } catch let error as ControlError {
        return error
    } catch {
        return ControlError(.internal, "unexpected error \(error)")
    }
}

/// A mutable value behind a reference, so mutating calls can sit inside `#expect(...)`.
final class Ref<Value> {
    var value: Value
    init(_ value: Value) { self.value = value }
}
