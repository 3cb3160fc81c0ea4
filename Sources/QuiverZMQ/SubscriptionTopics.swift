/// The topics an XPUB socket's subscribers want, kept from the (un)subscription messages the
/// socket passes up (first byte 1: subscribe, 0: unsubscribe; then the topic).
///
/// libzmq passes a subscription every time with `xpubVerbose(true)` (once per topic without), and
/// an unsubscription only when the last subscriber of that topic is gone, whether it unsubscribed
/// or disconnected. So a topic is here exactly while at least one subscriber holds it; a publisher
/// can skip producing messages nobody would receive.
public struct SubscriptionTopics: Sendable {
    private var topics: Set<[UInt8]> = []

    public init() {}

    /// Applies one message received on the XPUB socket. Returns true for a subscription (a
    /// subscriber that may want a greeting), false otherwise; other messages change nothing.
    @discardableResult
    public mutating func apply(_ message: [UInt8]) -> Bool {
        guard let kind = message.first else { return false }
        let topic = Array(message.dropFirst())
        switch kind {
        case 1:
            topics.insert(topic)
            return true
        case 0:
            topics.remove(topic)
            // A set keeps its storage when emptied: let it go with the last subscriber.
            if topics.isEmpty { topics = [] }
            return false
        default:
            return false
        }
    }

    /// Whether a message that begins with `prefix` reaches at least one subscriber (a subscribed
    /// topic is a prefix of it; the empty topic takes everything).
    public func wants(_ prefix: [UInt8]) -> Bool {
        topics.contains { prefix.starts(with: $0) }
    }

    /// No subscriber holds any topic.
    public var isEmpty: Bool { topics.isEmpty }
}
