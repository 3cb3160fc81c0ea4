import QuiverControl
import Testing

@Suite("Shared state")
struct StateTests {
    @Test("atomic multi-key update, null deletes, owners and versions")
    func update() throws {
        var store = SharedStateStore()
        try store.update(client: "alice", set: ["avatar.alice": ["x": 1], "scene.color": "red"], persist: false, now: 0)
        #expect(store.version == 1)
        #expect(store.count == 2)
        #expect(store.value("scene.color") == "red")
        #expect(store.entry("avatar.alice") == SharedStateStore.Entry(value: ["x": 1], owner: "alice", persist: false, bytes: 7))
        try store.update(client: "bob", set: ["scene.color": "blue", "avatar.alice": nil, "missing": nil], persist: true, now: 1)
        #expect(store.version == 2)
        #expect(store.value("avatar.alice") == nil)
        #expect(store.entry("scene.color")?.owner == "bob")
        #expect(store.entry("scene.color")?.persist == true)
        #expect(store.count == 1)
        // Deleting only absent keys changes nothing.
        try store.update(client: "bob", set: ["nothing": nil], persist: false, now: 2)
        #expect(store.version == 2)
        #expect(store.totalValueBytes == 6)  // "blue"
    }

    @Test("invalid keys and values reject the whole update")
    func invalid() throws {
        var store = SharedStateStore()
        try store.update(client: "a", set: ["k": 1], persist: false, now: 0)
        let long = String(repeating: "k", count: 257)
        #expect(controlError { try store.update(client: "a", set: ["k": 2, long: 1], persist: false, now: 0) }
                == ControlError(.invalidArgument, "state key must be 1...256 bytes, got 257"))
        #expect(controlError { try store.update(client: "a", set: ["k": 2, "": 1], persist: false, now: 0) }?.code == .invalidArgument)
        #expect(controlError { try store.update(client: "a", set: ["k": 2, "a\nb": 1], persist: false, now: 0) }
                == ControlError(.invalidArgument, "state key 'a\\u{a}b' contains a control character"))
        let big = JSONValue.string(String(repeating: "x", count: 64 << 10))  // 65538 bytes with quotes
        #expect(controlError { try store.update(client: "a", set: ["k": 2, "big": big], persist: false, now: 0) }
                == ControlError(.invalidArgument, "state value of 'big' is 65538 bytes encoded, at most 65536"))
        #expect(controlError { try store.update(client: "a", set: ["k": 2, "n": .number(.infinity)], persist: false, now: 0) }?.code == .invalidArgument)
        #expect(store.value("k") == 1)
        #expect(store.version == 1)
        // A key of exactly 256 bytes (multi-byte characters count in bytes) and a value of exactly 64 KiB are fine.
        let key256 = String(repeating: "é", count: 128)
        try store.update(client: "a", set: [key256: .string(String(repeating: "x", count: (64 << 10) - 2))], persist: false, now: 0)
        #expect(store.count == 2)
    }

    @Test("the key limit and the total size limit refuse, changing nothing")
    func limits() throws {
        var limits = SharedStateStore.Limits()
        limits.maxKeys = 3
        limits.maxTotalValueBytes = 20
        var store = SharedStateStore(limits: limits)
        try store.update(client: "a", set: ["a": 1, "b": 2, "c": 3], persist: false, now: 0)
        #expect(controlError { try store.update(client: "a", set: ["d": 4], persist: false, now: 0) }
                == ControlError(.refused, "the shared state would hold 4 keys, at most 3"))
        // Replacing one key while adding another stays within the limit.
        try store.update(client: "a", set: ["a": nil, "d": 4], persist: false, now: 0)
        #expect(controlError { try store.update(client: "a", set: ["d": "0123456789abcdefghij"], persist: false, now: 0) }?.code == .refused)
        #expect(store.value("d") == 4)
        #expect(controlError { try store.lock(client: "a", keys: ["w", "x", "y", "z"], seconds: 10, now: 0) }
                == ControlError(.refused, "the shared state would hold 4 locks, at most 3"))
    }

    @Test("lock contention: one client wins, the other gets locked and nothing changes")
    func contention() throws {
        var store = SharedStateStore()
        try store.update(client: "alice", set: ["sel": [1, 2]], persist: false, now: 0)
        try store.lock(client: "alice", keys: ["sel", "cam"], seconds: 10, now: 0)
        let version = store.version
        #expect(store.lock(on: "sel", now: 5) == StateLock(owner: "alice", expires: 10))
        // Bob cannot write a locked key, even alongside a free one: all or nothing.
        let e = controlError { try store.update(client: "bob", set: ["free": 1, "sel": [3]], persist: false, now: 5) }
        #expect(e == ControlError(.locked, "state key 'sel' is locked by client 'alice' for 5.0 s more"))
        #expect(store.value("free") == nil)
        #expect(store.value("sel") == [1, 2])
        // ...nor lock one of them (all or nothing), nor unlock it.
        #expect(controlError { try store.lock(client: "bob", keys: ["other", "cam"], seconds: 10, now: 5) }?.code == .locked)
        #expect(store.lock(on: "other", now: 5) == nil)
        #expect(controlError { try store.unlock(client: "bob", keys: ["sel"], now: 5) }?.code == .locked)
        // ...nor delete it.
        #expect(controlError { try store.update(client: "bob", set: ["sel": nil], persist: false, now: 5) }?.code == .locked)
        #expect(store.version == version)
        // Alice can write her locked key.
        try store.update(client: "alice", set: ["sel": [4]], persist: false, now: 6)
        #expect(store.value("sel") == [4])
    }

    @Test("an expired lock is free at once; expire() drops it; the owner may re-lock to extend")
    func expiry() throws {
        var store = SharedStateStore()
        try store.lock(client: "alice", keys: ["k"], seconds: 10, now: 0)
        try store.lock(client: "alice", keys: ["k"], seconds: 20, now: 5)     // extend to 25
        #expect(store.lock(on: "k", now: 24.9)?.expires == 25)
        #expect(controlError { try store.update(client: "bob", set: ["k": 1], persist: false, now: 24.9) }?.code == .locked)
        // At 25 the lock has ended, though expire() has not run yet.
        #expect(store.lock(on: "k", now: 25) == nil)
        try store.update(client: "bob", set: ["k": 1], persist: false, now: 25)
        try store.lock(client: "bob", keys: ["k"], seconds: 1, now: 25)
        #expect(store.lock(on: "k", now: 25)?.owner == "bob")
        let v = store.version
        store.expire(now: 26)
        #expect(store.snapshot().locks.isEmpty)
        #expect(store.version == v + 1)
        store.expire(now: 27)
        #expect(store.version == v + 1)
        // Seconds must be in (0, 3600].
        #expect(controlError { try store.lock(client: "a", keys: ["k"], seconds: 0, now: 0) }?.code == .invalidArgument)
        #expect(controlError { try store.lock(client: "a", keys: ["k"], seconds: 3600.5, now: 0) }?.code == .invalidArgument)
        #expect(controlError { try store.lock(client: "a", keys: ["k"], seconds: .nan, now: 0) }?.code == .invalidArgument)
        #expect(controlError { try store.lock(client: "a", keys: [], seconds: 1, now: 0) }?.code == .invalidArgument)
        try store.lock(client: "a", keys: ["k"], seconds: 3600, now: 0)
    }

    @Test("unlock: only the owner; a free key is a no-op")
    func unlock() throws {
        var store = SharedStateStore()
        try store.lock(client: "alice", keys: ["a", "b"], seconds: 10, now: 0)
        let v = store.version
        try store.unlock(client: "alice", keys: ["never-locked"], now: 1)
        #expect(store.version == v)
        try store.unlock(client: "alice", keys: ["a"], now: 1)
        #expect(store.lock(on: "a", now: 1) == nil)
        #expect(store.lock(on: "b", now: 1)?.owner == "alice")
        #expect(store.version == v + 1)
    }

    @Test("clientLeft removes only its non-persistent keys, and its locks")
    func clientLeft() throws {
        var store = SharedStateStore()
        try store.update(client: "alice", set: ["a.tmp": 1, "a.keep": 2], persist: false, now: 0)
        try store.update(client: "alice", set: ["a.keep": 3], persist: true, now: 0)
        try store.update(client: "bob", set: ["b.tmp": 4], persist: false, now: 0)
        // Bob overwrites one of Alice's keys: it is his now.
        try store.update(client: "alice", set: ["shared": 5], persist: false, now: 0)
        try store.update(client: "bob", set: ["shared": 6], persist: false, now: 0)
        try store.lock(client: "alice", keys: ["lockme"], seconds: 100, now: 0)
        try store.lock(client: "bob", keys: ["b.tmp"], seconds: 100, now: 0)
        store.clientLeft("alice")
        #expect(store.snapshot().values == ["a.keep": 3, "b.tmp": 4, "shared": 6])
        #expect(store.snapshot().locks == ["b.tmp": StateLock(owner: "bob", expires: 100)])
        #expect(store.entry("a.keep")?.owner == "alice")
        store.clientLeft("bob")
        #expect(store.snapshot().values == ["a.keep": 3])
        #expect(store.snapshot().locks.isEmpty)
        #expect(store.totalValueBytes == 1)
        let v = store.version
        store.clientLeft("nobody")
        #expect(store.version == v)
    }

    @Test("deltas coalesce changes per key, last write wins, with lock changes; nil when nothing changed")
    func deltas() throws {
        var store = SharedStateStore()
        #expect(store.takeDelta() == nil)
        try store.update(client: "a", set: ["x": 1, "y": 1], persist: false, now: 0)
        try store.update(client: "a", set: ["x": 2], persist: false, now: 0)
        try store.update(client: "a", set: ["y": nil, "z": 3], persist: false, now: 0)
        try store.lock(client: "a", keys: ["x"], seconds: 5, now: 0)
        try store.lock(client: "a", keys: ["z"], seconds: 5, now: 0)
        try store.unlock(client: "a", keys: ["z"], now: 1)
        let d1 = store.takeDelta()
        let locks1: [String: StateLock?] = ["x": StateLock(owner: "a", expires: 5), "z": nil]
        #expect(d1 == StateDelta(version: 6, base: 0, values: ["x": 2, "y": nil, "z": 3], locks: locks1))
        #expect(store.takeDelta() == nil)
        store.expire(now: 10)
        let d2 = store.takeDelta()
        let locks2: [String: StateLock?] = ["x": nil]
        #expect(d2 == StateDelta(version: 7, base: 6, values: [:], locks: locks2))
    }

    @Test("state messages: JSON layout, round trip, relative lock times")
    func messages() throws {
        var store = SharedStateStore()
        try store.update(client: "a", set: ["k": ["p": [1, 2]]], persist: false, now: 100)
        try store.lock(client: "a", keys: ["k"], seconds: 5, now: 100)
        try store.lock(client: "b", keys: ["gone"], seconds: 1, now: 100)
        let snapshot = StateMessage.snapshot(store.snapshot())
        // Encoded at 102 on the server: "gone" has ended and is left out.
        let frames = snapshot.frames(now: 102)
        #expect(frames[0] == bytes("state"))
        #expect(String(decoding: frames[1], as: UTF8.self) ==
            #"{"kind":"snapshot","locks":{"k":{"expires_in":3,"owner":"a"}},"values":{"k":{"p":[1,2]}},"version":3}"#)
        // Decoded on a client whose clock reads 5000.
        let decoded = try StateMessage.decode(frames: frames, now: 5000)
        #expect(decoded == .snapshot(StateSnapshot(version: 3, values: ["k": ["p": [1, 2]]], locks: ["k": StateLock(owner: "a", expires: 5003)])))
        _ = store.takeDelta()
        try store.update(client: "a", set: ["k": nil, "n": 1], persist: false, now: 103)
        try store.unlock(client: "a", keys: ["k"], now: 103)
        let delta = StateMessage.delta(store.takeDelta()!)
        #expect(String(decoding: delta.body(now: 103), as: UTF8.self) ==
            #"{"base":3,"kind":"delta","locks":{"k":null},"values":{"k":null,"n":1},"version":5}"#)
        #expect(try StateMessage.decode(body: delta.body(now: 103), now: 0) == delta)
        #expect(controlError { _ = try StateMessage.decode(frames: [bytes("frame"), frames[1]], now: 0) }?.code == .malformed)
        #expect(controlError { _ = try StateMessage.decode(body: bytes(#"{"kind":"other","version":1,"values":{},"locks":{}}"#), now: 0) }?.code == .malformed)
        #expect(controlError { _ = try StateMessage.decode(body: bytes(#"{"kind":"snapshot","version":-1,"values":{},"locks":{}}"#), now: 0) }?.code == .malformed)
    }

    @Test("a replica applies a snapshot then deltas, ignores old ones, notices gaps")
    func replica() throws {
        var store = SharedStateStore()
        let early = Ref(StateReplica())     // subscribed from the start
        try store.update(client: "a", set: ["x": 1], persist: false, now: 0)
        let d1 = store.takeDelta()!
        #expect(early.value.apply(.delta(d1)) == .applied)
        try store.update(client: "a", set: ["y": 2], persist: false, now: 0)
        try store.lock(client: "a", keys: ["y"], seconds: 10, now: 0)
        let snapshot = store.snapshot()                           // version 3
        try store.update(client: "b", set: ["x": nil, "z": 3], persist: false, now: 1)
        let d2 = store.takeDelta()!                               // base 1, version 4
        try store.update(client: "b", set: ["z": 4], persist: false, now: 2)
        let d3 = store.takeDelta()!                               // base 4, version 5

        // A late joiner: snapshot at 3, then d2 (base 1 <= 3: it covers everything since), then d3.
        let late = Ref(StateReplica())
        #expect(late.value.apply(.snapshot(snapshot)) == .applied)
        #expect(late.value.version == 3)
        #expect(late.value.activeLock("y", now: 5)?.owner == "a")
        #expect(late.value.apply(.delta(d1)) == .ignored)
        #expect(late.value.apply(.delta(d2)) == .applied)
        #expect(late.value.apply(.delta(d2)) == .ignored)
        #expect(late.value.apply(.delta(d3)) == .applied)
        #expect(late.value.values == store.snapshot().values)
        #expect(late.value.values == ["y": 2, "z": 4])
        #expect(late.value.isConsistent)
        #expect(late.value.apply(.snapshot(snapshot)) == .ignored)      // older than the replica

        // The early replica misses d2: d3 is applied but flagged, until the next snapshot.
        #expect(early.value.apply(.delta(d3)) == .appliedWithGap)
        #expect(!early.value.isConsistent)
        #expect(early.value.values == ["x": 1, "z": 4])                 // x's removal was missed
        #expect(early.value.apply(.snapshot(store.snapshot())) == .applied)
        #expect(early.value.isConsistent)
        #expect(early.value.values == ["y": 2, "z": 4])
    }
}
