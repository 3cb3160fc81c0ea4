import ArgumentParser
import CQuiverOS
import Foundation
import QuiverModel
import QuiverControl
import QuiverEngine
import QuiverWire

/// Where a run is and how to sign for it: the connection file.
struct ConnectionOptions: ParsableArguments {
    @Option(help: "The run's connection file (default quiver-run/connection.json).")
    var connection: String = "quiver-run/connection.json"

    @Option(help: "Seconds to wait for a reply (default 5).")
    var timeout: Double = 5

    @Option(help: "Client id (default: a random one per invocation).")
    var client: String?

    func commandClient() throws -> CommandClient {
        let info: ConnectionInfo
        do { info = try ConnectionInfo.read(from: connection) } catch {
            throw ValidationError("cannot read the connection file \(connection): \(error.localizedDescription) (is the server running? see --connection)")
        }
        guard let endpoint = info.endpoints["control"] else {
            throw ValidationError("\(connection) names no control endpoint (a server older than the control channel?)")
        }
        guard timeout > 0 && timeout <= 3600 else { throw ValidationError("--timeout must be in (0, 3600] seconds") }
        return try CommandClient(endpoint: endpoint, keyHex: info.key, clientID: client, timeout: .milliseconds(Int(timeout * 1000)))
    }
}

/// Prints a reply; exits 1 for an error reply.
func printReply(_ reply: CommandReply, format: OutputFormat) throws {
    if format == .json {
        print(String(decoding: reply.body, as: UTF8.self))
    } else if let error = reply.error {
        FileHandle.standardError.write(Data("quiver: \(error.code.rawValue): \(error.message)\n".utf8))
    } else {
        print(String(decoding: (reply.result ?? .null).encoded(), as: UTF8.self))
    }
    if !reply.isOK { throw ExitCode(1) }
}

struct Cmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send one signed command to a running server and print the reply.",
        discussion: """
        Arguments are name=value pairs; a value is read as JSON when it parses (numbers, true, \
        arrays, objects), else as a string. Examples:
          quiver cmd pause
          quiver cmd step count=100
          quiver cmd set values='{"temperature": 120}'
          quiver cmd state.update set='{"scene.color": "red"}'
          quiver cmd list --format json
        Exit status: 0 applied, 1 refused (the reply says why), 2 no reply.
        """)

    @Argument(help: "The command (quiver cmd list shows them all).")
    var name: String

    @Argument(help: "Arguments as name=value.")
    var arguments: [String] = []

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Output: text (the result, or the error on stderr) or json (the whole reply).")
    var format: OutputFormat = .table

    static func parseArguments(_ pairs: [String]) throws -> [String: JSONValue] {
        var args: [String: JSONValue] = [:]
        for pair in pairs {
            guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                throw ValidationError("argument '\(pair)' is not name=value")
            }
            let key = String(pair[..<eq]), text = String(pair[pair.index(after: eq)...])
            guard args[key] == nil else { throw ValidationError("argument '\(key)' given twice") }
            args[key] = (try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))) ?? .string(text)
        }
        return args
    }

    func validate() throws { _ = try Self.parseArguments(arguments) }

    func run() throws {
        let client = try connection.commandClient()
        defer { client.close() }
        let reply: CommandReply
        do { reply = try client.send(name, args: try Self.parseArguments(arguments)) } catch let e as ControlError where e.code == .timeout {
            FileHandle.standardError.write(Data("quiver: no reply within \(connection.timeout) s (is the server running?)\n".utf8))
            throw ExitCode(2)
        }
        try printReply(reply, format: format)
    }
}

struct Pull: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pull atoms toward a point for a while (an interactive force), then let go.",
        discussion: """
        Sets the interaction, renews it while it lasts (so it ends by itself within its lease if \
        this process dies), removes it after --seconds or on Ctrl-C, and prints the user energy and \
        work the engine reports.
        """)

    @Option(help: "Atom indices, comma separated (0-based).")
    var atoms: String

    @Option(help: "The target point x,y,z in nm.")
    var to: String

    @Option(help: "gaussian, spring or constant (default spring).")
    var type: String = "spring"

    @Option(help: "Strength (kJ/mol/nm^2 for spring, kJ/mol for gaussian, kJ/mol/nm for constant; default 100).")
    var scale: Double = 100

    @Option(help: "How long to pull, seconds (default 5).")
    var seconds: Double = 5

    @Option(help: "Largest force component on any atom, kJ/mol/nm (default 20000).")
    var maxForce: Double = 20000

    @Flag(help: "Split the force equally, not in proportion to mass.")
    var equal = false

    @Flag(help: "Draw new velocities for the atoms when the pull ends.")
    var resetVelocities = false

    @Option(help: "Interaction id (default pull-<pid>).")
    var id: String?

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Output: text or json (one reply per line).")
    var format: OutputFormat = .table

    func parsed() throws -> (atoms: [Int], to: [Double]) {
        let a = atoms.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !a.isEmpty, a.allSatisfy({ $0 != nil && $0! >= 0 }) else { throw ValidationError("--atoms must be comma-separated indices >= 0, got '\(atoms)'") }
        let t = to.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard t.count == 3, t.allSatisfy({ $0 != nil && $0!.isFinite }) else { throw ValidationError("--to must be three finite numbers x,y,z, got '\(to)'") }
        return (a.map { $0! }, t.map { $0! })
    }

    func validate() throws {
        _ = try parsed()
        guard seconds > 0 && seconds <= 86400 else { throw ValidationError("--seconds must be in (0, 86400]") }
        guard Interaction.Kind(rawValue: type) != nil else { throw ValidationError("--type must be gaussian, spring or constant, got '\(type)'") }
    }

    func run() throws {
        qv_signal_install_stop_handlers()
        let (indices, target) = try parsed()
        let client = try connection.commandClient()
        defer { client.close() }
        let lease = 2.0
        let interactionID = id ?? "pull-\(getpid())"
        let args: [String: JSONValue] = [
            "id": .string(interactionID), "type": .string(type), "position": .array(target.map { .number($0) }),
            "particles": .array(indices.map { .number(Double($0)) }), "scale": .number(scale), "max_force": .number(maxForce),
            "mass_weighted": .bool(!equal), "reset_velocities": .bool(resetVelocities), "lease": .number(lease),
        ]
        let first = try client.send("interaction.set", args: args)
        try printReply(first, format: format)
        let end = SystemClock.monotonicSeconds + seconds
        var lastRenew = SystemClock.monotonicSeconds
        while SystemClock.monotonicSeconds < end && qv_signal_stop_requested() == 0 {
            usleep(50_000)
            if SystemClock.monotonicSeconds - lastRenew >= lease / 3 {
                let r = try client.send("renew")
                if !r.isOK { try printReply(r, format: format) }
                lastRenew = SystemClock.monotonicSeconds
            }
        }
        let list = try client.send("interaction.list")
        let removed = try client.send("interaction.remove", args: ["id": .string(interactionID)])
        if format == .json {
            print(String(decoding: list.body, as: UTF8.self))
            print(String(decoding: removed.body, as: UTF8.self))
        } else if let r = list.result?.objectValue {
            let e = r["user_energy"]?.numberValue ?? 0, w = r["user_work"]?.numberValue ?? 0
            print("released \(interactionID) at step \(removed.result?.objectValue?["applied_step"]?.numberValue.map { Int($0) } ?? -1): user energy \(String(format: "%.3f", e)) kJ/mol, work \(String(format: "%.3f", w)) kJ/mol")
        }
        if !removed.isOK { try printReply(removed, format: format) }
    }
}
