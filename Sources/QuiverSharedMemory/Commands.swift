import CQuiverShm
import Glibc

/// The command ring of a segment (`segment.commands`): the control worker (the only poster) posts
/// commands, the engine (the only consumer) takes them in order, applies them and records its
/// verdict and reply, which the poster collects. Command `n` (1-based) lives in slot
/// `n % commandSlots`.
public struct CommandRing: Sendable {
    let mapping: Mapping
    /// Slots in the ring: at most this many commands are in flight.
    public let slots: Int

    /// Why a command could not be posted.
    public enum PostFailure: Error, Equatable, Sendable {
        /// Every slot holds a command the engine has not finished (is it running?).
        case full
        /// The payload is larger than a slot carries.
        case tooLarge(bytes: Int, capacity: Int)
    }

    /// Payload bytes one command may carry.
    public var capacity: Int { Int(mapping.with { qv_shm_command_capacity($0) }) }
    /// Bytes of a command slot's reply area. A longer reply goes after the command's payload, up to
    /// `replyCapacity(for:)`.
    public static let replyCapacity = Int(QV_SHM_COMMAND_REPLY)
    /// Bytes after a slot's header: the longest reply any command's slot can hold (one whose payload is empty).
    public var slotBody: Int { capacity + Self.replyCapacity }

    /// Engine side: the longest reply command `seq`'s slot holds (its reply area, or the rest of the
    /// slot after its payload when that is more).
    public func replyCapacity(for seq: UInt64) -> Int {
        Int(mapping.with { qv_shm_command_reply_capacity($0, seq) })
    }
    /// Commands posted so far (the newest has this sequence number).
    public var posted: UInt64 { mapping.with { qv_shm_commands_posted($0) } }
    /// Commands the engine finished, in order.
    public var applied: UInt64 { mapping.with { qv_shm_commands_applied($0) } }

    /// Posts a command for the engine (one poster per segment). Returns its sequence number.
    public func post(_ payload: [UInt8]) throws(PostFailure) -> UInt64 {
        let capacity = self.capacity
        guard payload.count <= capacity else { throw .tooLarge(bytes: payload.count, capacity: capacity) }
        var seq: UInt64 = 0
        let rc = payload.withUnsafeBytes { bytes in mapping.with { qv_shm_command_post($0, bytes.baseAddress, UInt32(bytes.count), &seq) } }
        switch rc {
        case Int32(QV_SHM_OK): return seq
        case Int32(QV_SHM_ERR_SIZE): throw .tooLarge(bytes: payload.count, capacity: capacity)
        default: throw .full
        }
    }

    /// The engine's result for command `seq`: nil while it is pending. Throws `.lapped` when the
    /// slot was reused (the result is gone), `.corrupt` when its reply length is beyond the slot.
    public func result(_ seq: UInt64) throws(ReadFailure) -> CommandResult? {
        var status: Int32 = 0, step: UInt64 = 0, length: UInt32 = 0, rc: Int32 = 0
        // Uninitialised: only the reply's own bytes are written and kept (no 128 KiB zero fill per
        // pending command per pass).
        let reply = [UInt8](unsafeUninitializedCapacity: slotBody) { buffer, count in
            rc = mapping.with {
                qv_shm_command_result($0, seq, &status, &step, UnsafeMutableRawPointer(buffer.baseAddress!).assumingMemoryBound(to: CChar.self), UInt32(buffer.count), &length)
            }
            count = rc == Int32(QV_SHM_READ_OK) ? Int(length) : 0
        }
        if rc == Int32(QV_SHM_READ_BUSY) { return nil }
        if let failure = ReadFailure(status: rc) { throw failure }
        return CommandResult(status: status, appliedStep: step, reply: reply)
    }

    /// Engine side: the payload of command `seq`, nil when that slot does not hold it (not posted
    /// yet, or overwritten). Throws `.corrupt` when the slot's length is beyond the slot.
    public func take(_ seq: UInt64) throws(ReadFailure) -> [UInt8]? {
        var payload = [UInt8](repeating: 0, count: capacity)
        var length: UInt32 = 0
        let rc = payload.withUnsafeMutableBytes { buffer in
            mapping.with { qv_shm_command_take($0, seq, buffer.baseAddress, UInt32(buffer.count), &length) }
        }
        if rc == Int32(QV_SHM_READ_LAPPED) { return nil }
        if let failure = ReadFailure(status: rc) { throw failure }
        return Array(payload.prefix(Int(length)))
    }

    /// Engine side: the verdict and reply (at most `replyCapacity(for: seq)` bytes, cut beyond) of command `seq`.
    public func finish(_ seq: UInt64, status: Int32, appliedStep: UInt64, reply: [UInt8]) {
        reply.withUnsafeBytes { bytes in
            mapping.with {
                qv_shm_command_finish($0, seq, status, appliedStep, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), UInt32(bytes.count), getpid())
            }
        }
    }
}

/// The engine's verdict on a command.
public struct CommandResult: Sendable, Equatable {
    /// 0: applied; anything else: refused (the reply says why).
    public var status: Int32
    /// The step at which it took effect.
    public var appliedStep: UInt64
    public var reply: [UInt8]
}
