/// The (client, nonce) pairs seen recently, to reject replays. Bounded: it never holds more than
/// `capacity` pairs; each is forgotten `lifetime` seconds after it was recorded.
///
/// Entries are kept in recording order, so expiry costs O(expired) per call while the clock moves
/// forward (a clock that steps back only keeps entries longer). Nonces are compared
/// case-insensitively (they are hex).
public struct NonceCache: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Recorded now: first use.
        case fresh
        /// Already recorded and not yet expired.
        case replayed
        /// Not recorded: the cache holds `capacity` live pairs.
        case full
    }

    private struct Key: Hashable, Sendable {
        let client: String
        let nonce: String
    }

    public let lifetime: Double
    public let capacity: Int
    /// Key -> expiry.
    private var expiries: [Key: Double] = [:]
    /// (expiry, key) in recording order; `head` is the first live index.
    private var queue: [(expiry: Double, key: Key)] = []
    private var head = 0

    public init(lifetime: Double, capacity: Int) {
        self.lifetime = lifetime
        self.capacity = max(1, capacity)
    }

    /// Pairs currently remembered (expired ones may linger until the next `insert` or `purge`).
    public var count: Int { expiries.count }

    /// Records (client, nonce) at `now` unless it is already there or the cache is full.
    public mutating func insert(client: String, nonce: String, now: Double) -> Outcome {
        purge(now: now)
        let key = Key(client: client, nonce: nonce.lowercased())
        if let expiry = expiries[key], expiry > now { return .replayed }
        guard expiries.count < capacity else { return .full }
        let expiry = now + lifetime
        expiries[key] = expiry
        queue.append((expiry, key))
        return .fresh
    }

    /// Forgets the pairs whose time is up.
    public mutating func purge(now: Double) {
        while head < queue.count, queue[head].expiry <= now {
            let (expiry, key) = queue[head]
            if expiries[key] == expiry { expiries[key] = nil }
            head += 1
        }
        // Compact once the dead prefix dominates, so the queue stays O(live entries).
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
    }
}

/// Checks a request as the control ROUTER received it: size, signature, fields, freshness and
/// replay, in that order (docs/control.md, "Verification"). One per control worker; not shared
/// between threads (a value type: copy it and the copies diverge).
public struct RequestVerifier: Sendable {
    public let signer: CommandSigner
    /// Seconds a request's `time` may differ from `now`.
    public let window: Double
    public let maxBodyBytes: Int
    private var nonces: NonceCache

    /// - Parameters:
    ///   - window: the replay window (default 30 s); nonces are remembered for twice as long.
    ///   - nonceCapacity: most (client, nonce) pairs remembered; beyond it requests are refused
    ///     with `unavailable` until older pairs expire (memory stays bounded; replays stay rejected).
    public init(signer: CommandSigner, window: Double = ControlDefaults.replayWindow,
                nonceCapacity: Int = ControlDefaults.nonceCapacity, maxBodyBytes: Int = ControlDefaults.maxBodyBytes) {
        self.signer = signer
        self.window = window
        self.maxBodyBytes = maxBodyBytes
        nonces = NonceCache(lifetime: 2 * window, capacity: nonceCapacity)
    }

    /// (client, nonce) pairs remembered now.
    public var rememberedNonces: Int { nonces.count }

    /// Verifies `frames`, the parts after the ROUTER's routing id: `[body, signature]`.
    ///
    /// 1. a body over `maxBodyBytes` (or no frame at all, or more than two) -> `malformed`;
    /// 2. one frame, or an empty signature -> `unsigned`;
    /// 3. a signature that is not HMAC-SHA256(key, body) over the raw bytes -> `bad_signature`
    ///    (the body is not parsed before this);
    /// 4. not JSON, a missing or ill-typed field -> `malformed`;
    /// 5. |now - time| > window -> `stale`;
    /// 6. (client, nonce) seen within 2 x window -> `replayed`; the cache full -> `unavailable`.
    ///
    /// Errors from step 4 on carry the request id (`ControlError.requestID`) once it was read.
    public mutating func verify(frames: [[UInt8]], now: Double) -> Result<CommandRequest, ControlError> {
        guard let body = frames.first else { return .failure(.malformed("empty message")) }
        guard body.count <= maxBodyBytes else {
            return .failure(.malformed("body of \(body.count) bytes exceeds the limit of \(maxBodyBytes)"))
        }
        guard frames.count >= 2, !frames[1].isEmpty else {
            return .failure(ControlError(.unsigned, "the request has no signature frame: send [body, HMAC-SHA256(key, body)]"))
        }
        guard frames.count == 2 else {
            return .failure(.malformed("a request has 2 frames [body, signature], got \(frames.count)"))
        }
        guard signer.isValid(signature: frames[1], for: body) else {
            return .failure(ControlError(.badSignature, "the signature does not match the body (wrong key, or the body was altered)"))
        }
        let request: CommandRequest
        do {
            request = try CommandRequest.parse(body: body)
        } catch {
            return .failure(error)
        }
        let skew = now - request.time
        guard abs(skew) <= window else {
            let direction = skew > 0 ? "old" : "in the future"
            return .failure(ControlError(.stale, "request time is \(Int(abs(skew).rounded())) s \(direction); the window is \(Int(window)) s (check the client's clock)", requestID: request.id))
        }
        switch nonces.insert(client: request.client, nonce: request.nonce, now: now) {
        case .fresh:
            return .success(request)
        case .replayed:
            return .failure(ControlError(.replayed, "nonce already used by client '\(request.client)'", requestID: request.id))
        case .full:
            return .failure(ControlError(.unavailable, "too many requests in the replay window (\(nonces.capacity) remembered); retry shortly", requestID: request.id))
        }
    }
}
