import ArgumentParser
import CLZ4
import COpenBLAS
import CZeroMQ
import QuiverEngine

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the build's libraries, the CPU's kernel variant and the core count.")

    func run() throws {
        var major: Int32 = 0, minor: Int32 = 0, patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        print("quiver \(QuiverVersion.string)")
        print("kernel: \(KernelVariant.best.rawValue) (scalar always available)")
        print("cores available: \(Machine.availableCores)")
        print("libzmq: \(major).\(minor).\(patch)")
        print("liblz4: \(String(cString: LZ4_versionString()))")
        print("openblas: \(String(cString: openblas_get_config())) (\(openblas_get_num_threads()) threads)")
    }
}

enum QuiverVersion {
    static let string = "0.1.0"
}
