import CQuiverPlugin
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a force-field plugin could not be loaded or started. Each case names the library.
public enum PluginError: Error, Equatable, CustomStringConvertible {
    /// No file at the path.
    case fileNotFound(path: String)
    /// dlopen refused the file (not a shared library, wrong architecture, a missing dependency...):
    /// its message.
    case loadFailed(path: String, message: String)
    /// The library lacks one of the functions of the ABI.
    case missingSymbol(path: String, symbol: String)
    /// The library was built for another version of the ABI.
    case abiMismatch(path: String, plugin: UInt32, host: UInt32)
    /// `quiver_plugin_create` refused the system or the options: the plugin's message.
    case createFailed(path: String, message: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path): return "plugin \(path): no such file"
        case .loadFailed(let path, let message): return "plugin \(path) could not be loaded: \(message)"
        case .missingSymbol(let path, let symbol):
            return "plugin \(path) does not export \(symbol) (see Sources/CQuiverPlugin/include/quiver_plugin.h)"
        case .abiMismatch(let path, let plugin, let host):
            return "plugin \(path) was built for plugin ABI version \(plugin), this Quiver speaks version \(host): rebuild it against this Quiver's quiver_plugin.h"
        case .createFailed(let path, let message): return "plugin \(path) refused to start: \(message)"
        }
    }
}

/// A force field implemented by a C plugin: a shared library exporting the functions of
/// `quiver_plugin.h` (docs/plugins.md).
///
/// `init` loads the library (`dlopen` with `RTLD_NOW | RTLD_LOCAL`), checks that every function is
/// there and that the ABI version matches. `prepare` (called by `Simulation.init`) creates the
/// plugin's state for the system with the option string, and throws `PluginError.createFailed`
/// with the plugin's message when it refuses. Every force evaluation calls the plugin, which adds
/// its forces into the simulation's arrays; a failure becomes `EngineError.forceField` with the
/// plugin's message. The library stays loaded as long as this object lives.
///
/// A plugin runs inside this process: a crash in it crashes the engine.
public final class PluginForceField: ForceField {
    /// The path the library was loaded from.
    public let path: String
    /// The option string handed to `quiver_plugin_create`.
    public let options: String
    /// The plugin's own name (`quiver_plugin_name`), or the file name when it gives none.
    public let name: String

    private let handle: UnsafeMutableRawPointer
    private let createFunction: quiver_plugin_create_fn
    private let forcesFunction: quiver_plugin_forces_fn
    private let destroyFunction: quiver_plugin_destroy_fn
    private var state: UnsafeMutableRawPointer?
    private var created = false
    private let error: UnsafeMutablePointer<CChar>
    private static let errorCapacity = 1024

    /// Loads the plugin at `path`. Throws `PluginError`: no such file, dlopen's message, a missing
    /// function (named), or an ABI version mismatch (both numbers).
    public init(path: String, options: String = "") throws {
        self.path = path
        self.options = options
        guard FileManager.default.fileExists(atPath: path) else { throw PluginError.fileNotFound(path: path) }
        // dlopen searches the library path for a bare name; a file name here always means this file.
        let loadPath = path.contains("/") ? path : "./" + path
        _ = dlerror()
        guard let handle = dlopen(loadPath, RTLD_NOW | RTLD_LOCAL) else {
            let message = dlerror().map { String(cString: $0) } ?? "dlopen failed"
            throw PluginError.loadFailed(path: path, message: message)
        }
        func symbol(_ name: String) throws -> UnsafeMutableRawPointer {
            guard let p = dlsym(handle, name) else {
                throw PluginError.missingSymbol(path: path, symbol: name)
            }
            return p
        }
        do {
            let version = unsafeBitCast(try symbol("quiver_plugin_abi_version"), to: quiver_plugin_abi_version_fn.self)()
            guard version == UInt32(QUIVER_PLUGIN_ABI_VERSION) else {
                throw PluginError.abiMismatch(path: path, plugin: version, host: UInt32(QUIVER_PLUGIN_ABI_VERSION))
            }
            let nameFunction = unsafeBitCast(try symbol("quiver_plugin_name"), to: quiver_plugin_name_fn.self)
            createFunction = unsafeBitCast(try symbol("quiver_plugin_create"), to: quiver_plugin_create_fn.self)
            forcesFunction = unsafeBitCast(try symbol("quiver_plugin_forces"), to: quiver_plugin_forces_fn.self)
            destroyFunction = unsafeBitCast(try symbol("quiver_plugin_destroy"), to: quiver_plugin_destroy_fn.self)
            let own = nameFunction().map { String(cString: $0) } ?? ""
            name = own.isEmpty ? (path as NSString).lastPathComponent : own
        } catch {
            dlclose(handle)
            throw error
        }
        self.handle = handle
        self.error = .allocate(capacity: Self.errorCapacity)
        self.error.initialize(repeating: 0, count: Self.errorCapacity)
    }

    deinit {
        if created { destroyFunction(state) }
        dlclose(handle)
        error.deallocate()
    }

    /// Creates the plugin's state for `setup.system` (destroying the state of an earlier simulation).
    /// Throws `PluginError.createFailed` with the plugin's message.
    public func prepare(_ setup: ForceFieldSetup) throws {
        if created {
            destroyFunction(state)
            created = false
            state = nil
        }
        let system = setup.system
        let masses = system.masses.map(Double.init)
        let names = system.typeNames.map { strdup($0) }
        defer { names.forEach { free($0) } }
        let code: Int32 = masses.withUnsafeBufferPointer { m in
            system.types.withUnsafeBufferPointer { t in
                names.map { UnsafePointer($0) }.withUnsafeBufferPointer { n in
                    var description = quiver_plugin_system(
                        struct_size: UInt32(MemoryLayout<quiver_plugin_system>.stride),
                        abi_version: UInt32(QUIVER_PLUGIN_ABI_VERSION),
                        atom_count: Int64(system.count),
                        masses: m.baseAddress, types: t.baseAddress,
                        type_count: Int32(system.typeNames.count), threads: Int32(setup.threads),
                        type_names: n.baseAddress,
                        box: (system.box.x, system.box.y, system.box.z))
                    clearError()
                    return createFunction(&description, options, &state, error, Self.errorCapacity)
                }
            }
        }
        guard code == 0 else {
            state = nil
            throw PluginError.createFailed(path: path, message: errorMessage(code: code, function: "quiver_plugin_create"))
        }
        created = true
    }

    /// Calls `quiver_plugin_forces`; a non-zero return throws `EngineError.forceField` with the
    /// plugin's message.
    public func addForces(_ context: ForceContext) throws -> Double {
        guard created else { throw EngineError.forceField(name: name, message: "used before prepare()") }
        var io = quiver_plugin_eval(
            struct_size: UInt32(MemoryLayout<quiver_plugin_eval>.stride),
            compute_energy: context.computeEnergy ? 1 : 0,
            atom_count: Int64(context.count), step: Int64(context.step),
            x: context.x.baseAddress, y: context.y.baseAddress, z: context.z.baseAddress,
            fx: context.fx.baseAddress, fy: context.fy.baseAddress, fz: context.fz.baseAddress,
            box: (context.box.x, context.box.y, context.box.z),
            energy: 0)
        clearError()
        let code = forcesFunction(state, &io, error, Self.errorCapacity)
        guard code == 0 else {
            throw EngineError.forceField(name: name, message: errorMessage(code: code, function: "quiver_plugin_forces"))
        }
        return context.computeEnergy ? io.energy : 0
    }

    private func clearError() {
        error[0] = 0
        error[Self.errorCapacity - 1] = 0
    }

    private func errorMessage(code: Int32, function: String) -> String {
        error[Self.errorCapacity - 1] = 0 // terminated even when the plugin forgot to
        let message = String(cString: error)
        return message.isEmpty ? "\(function) returned \(code) without a message" : message
    }
}
