import CQuiverCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A fixed-size, 64-byte aligned array of `T`, padded to a multiple of 16 elements and zeroed.
/// Owns its memory; pointers into it are valid for the life of the buffer.
final class AlignedBuffer<T> {
    let count: Int
    let pointer: UnsafeMutablePointer<T>

    init(count: Int, zero: T) throws {
        self.count = count
        let padded = ((max(count, 1) + 15) / 16) * 16
        var raw: UnsafeMutableRawPointer?
        guard posix_memalign(&raw, 64, padded * MemoryLayout<T>.stride) == 0, let raw else { throw EngineError.outOfMemory }
        pointer = raw.bindMemory(to: T.self, capacity: padded)
        pointer.initialize(repeating: zero, count: padded)
    }

    deinit { free(pointer) }

    var buffer: UnsafeMutableBufferPointer<T> { UnsafeMutableBufferPointer(start: pointer, count: count) }
}

/// The structure-of-arrays dynamic state of a simulation (float32, SIMD padded) and the C view of it.
final class StateStorage {
    let count: Int
    let x, y, z, vx, vy, vz, fx, fy, fz, mass, invMass, sigmaV: AlignedBuffer<Float>
    let imageX, imageY, imageZ: AlignedBuffer<Int32>
    let types: [Int32]
    var box: Box
    /// The C view; its pointers stay valid as long as this object lives.
    private(set) var cState: qv_state

    init(system: ParticleSystem) throws {
        let n = system.count
        count = n
        func f() throws -> AlignedBuffer<Float> { try AlignedBuffer(count: n, zero: 0) }
        func i() throws -> AlignedBuffer<Int32> { try AlignedBuffer(count: n, zero: 0) }
        x = try f(); y = try f(); z = try f()
        vx = try f(); vy = try f(); vz = try f()
        fx = try f(); fy = try f(); fz = try f()
        mass = try f(); invMass = try f(); sigmaV = try f()
        imageX = try i(); imageY = try i(); imageZ = try i()
        types = system.types
        box = system.box
        cState = qv_state()
        cState = qv_state(
            n: Int32(n), x: x.pointer, y: y.pointer, z: z.pointer,
            vx: vx.pointer, vy: vy.pointer, vz: vz.pointer,
            fx: fx.pointer, fy: fy.pointer, fz: fz.pointer,
            mass: UnsafePointer(mass.pointer), inv_mass: UnsafePointer(invMass.pointer),
            image_x: imageX.pointer, image_y: imageY.pointer, image_z: imageZ.pointer)
        for k in 0..<n {
            mass.pointer[k] = system.masses[k]
            invMass.pointer[k] = 1 / system.masses[k]
        }
        setPositions(system.positions)
        setVelocities(system.velocities)
    }

    func setPositions(_ p: [SIMD3<Float>]) {
        for k in 0..<count {
            x.pointer[k] = p[k].x; y.pointer[k] = p[k].y; z.pointer[k] = p[k].z
            imageX.pointer[k] = 0; imageY.pointer[k] = 0; imageZ.pointer[k] = 0
        }
    }

    func setImages(x ix: [Int32], y iy: [Int32], z iz: [Int32]) {
        for k in 0..<count { imageX.pointer[k] = ix[k]; imageY.pointer[k] = iy[k]; imageZ.pointer[k] = iz[k] }
    }

    func setVelocities(_ v: [SIMD3<Float>]) {
        for k in 0..<count { vx.pointer[k] = v[k].x; vy.pointer[k] = v[k].y; vz.pointer[k] = v[k].z }
    }

    func positions() -> [SIMD3<Float>] { (0..<count).map { SIMD3(x.pointer[$0], y.pointer[$0], z.pointer[$0]) } }
    func velocities() -> [SIMD3<Float>] { (0..<count).map { SIMD3(vx.pointer[$0], vy.pointer[$0], vz.pointer[$0]) } }
    func forces() -> [SIMD3<Float>] { (0..<count).map { SIMD3(fx.pointer[$0], fy.pointer[$0], fz.pointer[$0]) } }

    func unwrappedPositions() -> [SIMD3<Double>] {
        (0..<count).map { k in
            SIMD3(Double(x.pointer[k]) + Double(imageX.pointer[k]) * box.x,
                  Double(y.pointer[k]) + Double(imageY.pointer[k]) * box.y,
                  Double(z.pointer[k]) + Double(imageZ.pointer[k]) * box.z)
        }
    }
}

/// Owns a C thread pool.
final class ThreadPool {
    let pointer: OpaquePointer
    let size: Int
    init(threads: Int) throws {
        guard let p = qv_pool_create(Int32(threads)) else { throw EngineError.threadsUnavailable(threads) }
        pointer = p
        size = threads
    }
    deinit { qv_pool_destroy(pointer) }
}
