import QuiverControl
import Testing

@Suite("Rate limiter and sessions")
struct LimiterTests {
    @Test("a burst, then refill at the rate")
    func burstAndRefill() {
        var limiter = RateLimiter(rate: 10, burst: 5)
        for i in 0..<5 { #expect(limiter.allow(client: "a", now: 100), "request \(i)") }
        #expect(!limiter.allow(client: "a", now: 100))
        #expect(!limiter.allow(client: "a", now: 100.05))      // half a token
        #expect(limiter.allow(client: "a", now: 100.1))        // one token back
        #expect(!limiter.allow(client: "a", now: 100.1))
        // Other clients have their own buckets.
        #expect(limiter.allow(client: "b", now: 100.1))
        // Refill is capped at the burst.
        for i in 0..<5 { #expect(limiter.allow(client: "a", now: 200), "after refill \(i)") }
        #expect(!limiter.allow(client: "a", now: 200))
        #expect(abs(limiter.tokens(client: "a", now: 200.25) - 2.5) < 1e-9)
        // A clock going back does not mint tokens.
        #expect(!limiter.allow(client: "a", now: 150))
    }

    @Test("idle clients are forgotten; at the bound new clients are refused, not evicting others")
    func bounded() {
        var limiter = RateLimiter(rate: 1, burst: 2, maxClients: 2)
        #expect(limiter.allow(client: "a", now: 0))
        #expect(limiter.allow(client: "b", now: 0))
        #expect(!limiter.allow(client: "c", now: 0.5))
        #expect(limiter.trackedClients == 2)
        // After 1 s, a and b have full buckets again (1 + 1 token): forgotten, room for c.
        #expect(limiter.allow(client: "c", now: 1))
        #expect(limiter.trackedClients == 1)
        limiter.remove(client: "c")
        #expect(limiter.trackedClients == 0)
        // A busy client stays tracked (and limited).
        var busy = RateLimiter(rate: 1, burst: 2, maxClients: 10)
        #expect(busy.allow(client: "x", now: 0))
        #expect(busy.allow(client: "x", now: 0))
        #expect(!busy.allow(client: "x", now: 0.5))
        busy.forgetIdle(now: 0.5)
        #expect(busy.trackedClients == 1)
        #expect(!busy.allow(client: "x", now: 0.6))
    }

    @Test("sessions: touch, expire after the lease, remove")
    func sessions() {
        var s = ClientSessions()
        s.touch("a", now: 0)
        s.touch("b", now: 5)
        s.touch("c", now: 1)
        #expect(s.expired(now: 10, lease: 10).isEmpty)
        #expect(s.expired(now: 11.5, lease: 10) == ["a", "c"])
        #expect(s.clients == ["b"])
        s.touch("b", now: 12)
        #expect(s.lastSeen("b") == 12)
        #expect(s.expired(now: 20, lease: 10).isEmpty)
        #expect(s.remove("b"))
        #expect(!s.remove("b"))
        #expect(s.count == 0)
    }
}
