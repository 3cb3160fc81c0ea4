import Foundation
import Testing
import QuiverEngine

/// The package's root, from this file's path.
private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

private struct PluginBuildError: Error, CustomStringConvertible {
    let description: String
}

/// A scratch directory for building plugins, removed by `cleanUp()`.
private final class PluginWorkspace {
    let directory: URL

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("quiver-plugin-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    func cleanUp() { try? FileManager.default.removeItem(at: directory) }

    /// The system C compiler: `$CC` (which may carry flags), else the first of cc, clang, gcc on the PATH.
    static func compiler() throws -> [String] {
        let environment = ProcessInfo.processInfo.environment
        if let cc = environment["CC"]?.split(separator: " ").map(String.init), let first = cc.first {
            guard let resolved = which(first) else { throw PluginBuildError(description: "$CC is '\(environment["CC"]!)', which is not an executable") }
            return [resolved] + cc.dropFirst()
        }
        for name in ["cc", "clang", "gcc"] {
            if let path = which(name) { return [path] }
        }
        throw PluginBuildError(description: "no C compiler to build the test plugins: set $CC, or install cc, clang or gcc on the PATH")
    }

    private static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// Compiles `source` into the shared library `name` in this workspace; returns its path.
    func build(source: URL, name: String, flags: [String] = []) throws -> String {
        let output = directory.appendingPathComponent(name).path
        let compiler = try Self.compiler()
        let include = packageRoot.appendingPathComponent("Sources/CQuiverPlugin/include").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: compiler[0])
        process.arguments = Array(compiler.dropFirst()) + ["-shared", "-fPIC", "-O2", "-I", include] + flags + ["-o", output, source.path]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = errors
        try process.run()
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw PluginBuildError(description: "\(compiler.joined(separator: " ")) failed on \(source.path) (status \(process.terminationStatus)):\n\(text)")
        }
        return output
    }

    /// Writes `text` to `name` in this workspace and compiles it.
    func build(text: String, name: String, flags: [String] = []) throws -> String {
        let source = directory.appendingPathComponent(name + ".c")
        try text.write(to: source, atomically: true, encoding: .utf8)
        return try build(source: source, name: name, flags: flags)
    }

    /// The example LJ plugin.
    func buildLJ() throws -> String {
        try build(source: packageRoot.appendingPathComponent("Examples/Plugins/lj_plugin.c"), name: "lj_plugin.so")
    }
}

/// A stub plugin whose parts the flags select: STUB_VERSION (the ABI version it claims), STUB_NO_CREATE
/// (leave out quiver_plugin_create). Its create fails when the options are "describe", with a
/// description of what it received; its forces check the struct sizes and then fail without a message.
private let stubSource = """
    #include <stdio.h>
    #include <string.h>
    #include "quiver_plugin.h"
    #ifndef STUB_VERSION
    #define STUB_VERSION QUIVER_PLUGIN_ABI_VERSION
    #endif
    QUIVER_PLUGIN_EXPORT uint32_t quiver_plugin_abi_version(void) { return STUB_VERSION; }
    QUIVER_PLUGIN_EXPORT const char *quiver_plugin_name(void) { return NULL; }
    #ifndef STUB_NO_CREATE
    QUIVER_PLUGIN_EXPORT int32_t quiver_plugin_create(const quiver_plugin_system *s, const char *options, void **state, char *error, size_t cap) {
        *state = NULL;
        if (strcmp(options, "describe") == 0) {
            snprintf(error, cap, "size %u/%zu abi %u atoms %lld types %d names %s,%s mass0 %.3f type1 %d threads %d box %.2f %.2f %.2f",
                     s->struct_size, sizeof(quiver_plugin_system), s->abi_version, (long long)s->atom_count, s->type_count,
                     s->type_names[0], s->type_names[1], s->masses[0], s->types[1], s->threads, s->box[0], s->box[1], s->box[2]);
            return 1;
        }
        return 0;
    }
    #endif
    QUIVER_PLUGIN_EXPORT int32_t quiver_plugin_forces(void *state, quiver_plugin_eval *io, char *error, size_t cap) {
        (void)state;
        if (io->struct_size != sizeof(quiver_plugin_eval)) {
            snprintf(error, cap, "eval struct_size %u, expected %zu", io->struct_size, sizeof(quiver_plugin_eval));
            return 2;
        }
        return 7;
    }
    QUIVER_PLUGIN_EXPORT void quiver_plugin_destroy(void *state) { (void)state; }
    """

/// 343 atoms on a jittered simple cubic lattice (some slightly outside the box), LJ units.
private func randomLiquid(spacing: Double = 1.1, seed: UInt64 = 17) -> ParticleSystem {
    let lattice = jitteredLattice(cells: (7, 7, 7), spacing: spacing, jitter: 0.15 * spacing, seed: seed)
    return ParticleSystem(positions: lattice.positions, masses: Array(repeating: 1, count: lattice.positions.count), box: lattice.box)
}

@Suite("C plugin force fields")
struct PluginTests {
    @Test("the example LJ plugin computes the built-in LennardJones's forces and energy", arguments: [false, true])
    func matchesBuiltin(shift: Bool) throws {
        let workspace = try PluginWorkspace()
        defer { workspace.cleanUp() }
        let library = try workspace.buildLJ()
        // LJ units, and argon in nm and kJ/mol (the same configuration scaled to sigma = 0.3405).
        let cases: [(sigma: Double, epsilon: Double, cutoff: Double)] = [(1, 1, 2.5), (0.3405, 0.996, 0.85)]
        for c in cases {
            var system = randomLiquid(spacing: 1.1 * c.sigma)
            system.masses = Array(repeating: 39.948, count: system.count)
            let params = LennardJones.Parameters(epsilon: c.epsilon, sigma: c.sigma, cutoff: c.cutoff, skin: 0.1 * c.sigma, shift: shift)
            let plugin = try PluginForceField(path: library, options: "epsilon=\(c.epsilon) sigma=\(c.sigma) cutoff=\(c.cutoff) shift=\(shift ? 1 : 0)")
            #expect(plugin.name == "lj-plugin")
            let withPlugin = try Simulation(system: system, forceFields: [plugin], integrator: .velocityVerlet(timestep: 0.001),
                                            options: SimulationOptions(threads: 1))
            let reference = referenceForces(params, system: system)
            let pluginForces = withPlugin.forces()
            let ePlugin = try withPlugin.energies().potential
            let toReference = relativeNormError(pluginForces, reference.forces)
            #expect(toReference < 1e-6, "plugin vs double reference: \(toReference)")
            #expect(abs(ePlugin - reference.energy) <= 1e-9 * abs(reference.energy), "energy \(ePlugin) vs reference \(reference.energy)")
            for kernel in kernels {
                let (builtin, _) = try makeSimulation(system, params, kernel: kernel)
                let eBuiltin = try builtin.energies().potential
                let error = relativeNormError(pluginForces, builtin.forces().map(SIMD3<Double>.init))
                print("sigma \(c.sigma) shift \(shift) \(kernel.rawValue): relative force error \(error), energies \(ePlugin) vs \(eBuiltin)")
                #expect(error < 1e-4, "\(kernel.rawValue): relative force error \(error)")
                #expect(abs(ePlugin - eBuiltin) <= 1e-5 * abs(eBuiltin), "\(kernel.rawValue): energy \(ePlugin) vs \(eBuiltin)")
            }
        }
    }

    @Test("a simulation with the plugin runs and follows the built-in trajectory")
    func simulationRuns() throws {
        let workspace = try PluginWorkspace()
        defer { workspace.cleanUp() }
        let library = try workspace.buildLJ()
        var setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        setup.lennardJones.shift = true
        let plugin = try PluginForceField(path: library, options: "epsilon=1, sigma=1, cutoff=2.5, shift=1")
        let sim = try Simulation(system: setup.system, forceFields: [plugin], integrator: setup.integrator, options: SimulationOptions(threads: 1))
        let builtin = try setup.makeSimulation(options: SimulationOptions(threads: 1))
        let e0 = try sim.energies()
        #expect(e0.terms.map(\.name) == ["lj-plugin"])
        try sim.run(steps: 50, energy: true)
        try builtin.run(steps: 50, energy: true)
        #expect(sim.step == 50)
        let e1 = try sim.energies(), b1 = try builtin.energies()
        #expect(abs(e1.total - e0.total) < 1e-3 * abs(e0.total), "NVE with the plugin: \(e0.total) -> \(e1.total)")
        #expect(abs(e1.potential - b1.potential) < 1e-4 * abs(b1.potential), "plugin \(e1.potential) vs built-in \(b1.potential) after 50 steps")
        let p = sim.unwrappedPositions(), q = builtin.unwrappedPositions()
        let worst = zip(p, q).map { simd_length($0 - $1) }.max() ?? 0
        #expect(worst < 1e-3, "largest position difference after 50 steps: \(worst) nm")
    }

    @Test("a plugin failing at a step surfaces as EngineError.forceField with its message")
    func failAtStep() throws {
        let workspace = try PluginWorkspace()
        defer { workspace.cleanUp() }
        let library = try workspace.buildLJ()
        let setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        let sim = try Simulation(system: setup.system, forceFields: [try PluginForceField(path: library, options: "fail_at_step=3")],
                                 integrator: setup.integrator, options: SimulationOptions(threads: 1))
        #expect(throws: EngineError.forceField(name: "lj-plugin", message: "failing at step 3 as asked (fail_at_step)")) {
            try sim.run(steps: 5)
        }
        #expect(sim.step == 3)
    }

    @Test("loading errors: missing file, not a library, missing symbols, wrong ABI version")
    func loadErrors() throws {
        let workspace = try PluginWorkspace()
        defer { workspace.cleanUp() }
        let missing = workspace.directory.appendingPathComponent("nothing-here.so").path
        #expect(throws: PluginError.fileNotFound(path: missing)) { _ = try PluginForceField(path: missing) }

        let text = workspace.directory.appendingPathComponent("text.so")
        try "this is not a shared library\n".write(to: text, atomically: true, encoding: .utf8)
        do {
            _ = try PluginForceField(path: text.path)
            Issue.record("a text file loaded as a plugin")
        } catch PluginError.loadFailed(let path, let message) {
            #expect(path == text.path)
            #expect(!message.isEmpty)
            print("dlopen on a text file: \(message)")
        }

        let empty = try workspace.build(text: "int not_a_plugin(void) { return 0; }\n", name: "empty.so")
        #expect(throws: PluginError.missingSymbol(path: empty, symbol: "quiver_plugin_abi_version")) { _ = try PluginForceField(path: empty) }
        let noCreate = try workspace.build(text: stubSource, name: "nocreate.so", flags: ["-DSTUB_NO_CREATE"])
        #expect(throws: PluginError.missingSymbol(path: noCreate, symbol: "quiver_plugin_create")) { _ = try PluginForceField(path: noCreate) }
        let future = try workspace.build(text: stubSource, name: "future.so", flags: ["-DSTUB_VERSION=99"])
        #expect(throws: PluginError.abiMismatch(path: future, plugin: 99, host: 1)) { _ = try PluginForceField(path: future) }
        #expect(PluginError.abiMismatch(path: future, plugin: 99, host: 1).description.contains("version 99"))
    }

    @Test("create errors carry the plugin's message; the host passes the system and the struct sizes right")
    func createErrors() throws {
        let workspace = try PluginWorkspace()
        defer { workspace.cleanUp() }
        let library = try workspace.buildLJ()
        let setup = try BuiltinSystems.lennardJonesBench(cells: 4)
        func start(_ path: String, _ options: String, system: ParticleSystem? = nil) throws {
            _ = try Simulation(system: system ?? setup.system, forceFields: [try PluginForceField(path: path, options: options)],
                               integrator: setup.integrator, options: SimulationOptions(threads: 1))
        }
        #expect(throws: PluginError.createFailed(path: library, message: "option epsilon: 'abc' is not a valid value")) {
            try start(library, "epsilon=abc")
        }
        #expect(throws: PluginError.createFailed(path: library, message: "unknown option 'bogus' (known: epsilon, sigma, cutoff, shift, fail_at_step, crash_at_step)")) {
            try start(library, "sigma=1 bogus=2")
        }
        #expect(throws: PluginError.createFailed(path: library, message: "cutoff 4 nm is more than half the smallest box edge 6.71838 nm (the minimum image needs 2 cutoff <= edge)")) {
            try start(library, "cutoff=4")
        }

        // The stub describes what it was given.
        let stub = try workspace.build(text: stubSource, name: "stub.so")
        var system = ParticleSystem(positions: [[1, 1, 1], [2, 2, 2], [3, 3, 3]], masses: [39.948, 1, 2], types: [0, 1, 0],
                                    typeNames: ["Ar", "Xe"], box: Box(x: 10, y: 11, z: 12.5))
        system.velocities = Array(repeating: .zero, count: 3)
        #expect(throws: PluginError.createFailed(path: stub, message: "size 72/72 abi 1 atoms 3 types 2 names Ar,Xe mass0 39.948 type1 1 threads 1 box 10.00 11.00 12.50")) {
            try start(stub, "describe", system: system)
        }
        // Its forces check the eval struct's size, then fail without a message.
        let plugin = try PluginForceField(path: stub)
        #expect(plugin.name == "stub.so", "no name from the plugin: the file name")
        #expect(throws: EngineError.forceField(name: "stub.so", message: "quiver_plugin_forces returned 7 without a message")) {
            _ = try Simulation(system: system, forceFields: [plugin], integrator: .velocityVerlet(timestep: 0.001), options: SimulationOptions(threads: 1))
        }
    }
}
