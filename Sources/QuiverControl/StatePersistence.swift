import Foundation

/// The store as bytes, so the control worker can keep it in the run's shared-memory segment and a
/// restarted worker continues with every key, owner, persist flag, lock and the version.
extension SharedStateStore {
    private struct Persisted: Codable {
        struct Item: Codable {
            var value: JSONValue
            var owner: String
            var persist: Bool
        }
        struct Lock: Codable {
            var owner: String
            var expires: Double
        }
        var version: UInt64
        var entries: [String: Item]
        var locks: [String: Lock]
    }

    /// JSON of everything the store holds (not the pending delta).
    public func persisted() -> [UInt8] {
        let p = Persisted(version: version,
                          entries: entries.mapValues { Persisted.Item(value: $0.value, owner: $0.owner, persist: $0.persist) },
                          locks: locks.mapValues { Persisted.Lock(owner: $0.owner, expires: $0.expires) })
        return Array((try? JSONEncoder().encode(p)) ?? Data())
    }

    /// A store holding what `persisted()` wrote. Throws `malformed` for other bytes.
    public static func restoring(persisted bytes: [UInt8], limits: Limits = Limits()) throws(ControlError) -> SharedStateStore {
        let p: Persisted
        do { p = try JSONDecoder().decode(Persisted.self, from: Data(bytes)) } catch {
            throw ControlError(.malformed, "the saved shared state is unreadable: \(error)")
        }
        var store = SharedStateStore(limits: limits)
        for (key, item) in p.entries {
            let bytes = item.value.encoded().count
            store.entries[key] = Entry(value: item.value, owner: item.owner, persist: item.persist, bytes: bytes)
            store.totalBytes += bytes
        }
        store.locks = p.locks.mapValues { StateLock(owner: $0.owner, expires: $0.expires) }
        store.version = p.version
        return store
    }
}
