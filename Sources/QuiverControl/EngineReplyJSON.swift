/// How a typed `EngineReply` reads for a client (docs/control.md, "Results"): the control worker
/// answers every command the engine applied with `reply.commandReply(requestID:)`.
extension EngineReply {
    /// Success: the result's members plus `applied_step`. A refusal: `refused` with the engine's
    /// message.
    public func commandReply(requestID: String) -> CommandReply {
        switch outcome {
        case .refused(let message):
            return .failure(ControlError(.refused, message, requestID: requestID))
        case .applied(let result):
            var members = result.json
            members["applied_step"] = .number(Double(appliedStep))
            return .success(id: requestID, .object(members))
        }
    }
}

extension EngineResult {
    /// The members of the reply's `result` object, without `applied_step`.
    public var json: [String: JSONValue] {
        switch self {
        case .paused(let paused):
            return ["paused": .bool(paused)]
        case .stepping(let untilStep):
            return ["until_step": .number(Double(untilStep))]
        case .reset:
            return ["reset": true]
        case .parameters(let values):
            return Dictionary(uniqueKeysWithValues: values.map { ($0.key.rawValue, $0.value.json) })
        case .interaction(let id, let active):
            return ["id": .string(id), "active": .number(Double(active))]
        case .interactions(let listing):
            return listing.json
        case .renewed(let count):
            return ["renewed": .number(Double(count))]
        case .ended(let count):
            return ["ended": .number(Double(count))]
        }
    }
}

extension ParameterValue {
    /// A number, a boolean, a string, or null (unavailable).
    public var json: JSONValue {
        switch self {
        case .number(let x): return .number(x)
        case .bool(let b): return .bool(b)
        case .text(let t): return .string(t)
        case .unavailable: return .null
        }
    }
}

extension InteractionListing {
    /// `interactions` (each `id`, `type`, `owner`, `particles` count, `position`, `scale`,
    /// `expires_in`), `user_energy`, `user_work`.
    public var json: [String: JSONValue] {
        let list: [JSONValue] = interactions.map { e in
            ["id": .string(e.id), "type": .string(e.kind.rawValue), "owner": .string(e.owner), "particles": .number(Double(e.particles)),
             "position": [.number(e.position.x), .number(e.position.y), .number(e.position.z)], "scale": .number(e.scale),
             "expires_in": .number(e.expiresIn)]
        }
        return ["interactions": .array(list), "user_energy": .number(userEnergy), "user_work": .number(userWork)]
    }
}
