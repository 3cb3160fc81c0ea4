import QuiverControl
import Testing

@Suite("Rate limiter and sessions")
struct LimiterTests {
    @Test("a burst, then refill at the rate")
    func burstAndRefill() {
        let limiter = Ref(RateLimiter(rate: 10, burst: 5))
        for i in 0..<5 { #expect(limiter.value.allow(client: "a", now: 100) == true, "request \(i)") }
        #expect(limiter.value.allow(client: "a", now: 100) == false)
        #expect(limiter.value.allow(client: "a", now: 100.05) == false)      // half a token
        #expect(limiter.value.allow(client: "a", now: 100.1) == true)        // one token back
        #expect(limiter.value.allow(client: "a", now: 100.1) == false)
        // Other clients have their own buckets.
        #expect(limiter.value.allow(client: "b", now: 100.1) == true)
        // Refill is capped at the burst.
        for i in 0..<5 { #expect(limiter.value.allow(client: "a", now: 200) == true, "after refill \(i)") }
        #expect(limiter.value.allow(client: "a", now: 200) == false)
        #expect(abs(limiter.value.tokens(client: "a", now: 200.25) - 2.5) < 1e-9)
        // A clock going back does not mint tokens.
        #expect(limiter.value.allow(client: "a", now: 150) == false)
    }

    @Test("idle clients are forgotten; at the bound new clients are refused, not evicting others")
    func bounded() {
        let limiter = Ref(RateLimiter(rate: 1, burst: 2, maxClients: 2))
        #expect(limiter.value.allow(client: "a", now: 0) == true)
        #expect(limiter.value.allow(client: "b", now: 0) == true)
        #expect(limiter.value.allow(client: "c", now: 0.5) == false)
        #expect(limiter.value.trackedClients == 2)
        // After 1 s, a and b have full buckets again (1 + 1 token): forgotten, room for c.
        #expect(limiter.value.allow(client: "c", now: 1) == true)
        #expect(limiter.value.trackedClients == 1)
        limiter.value.remove(client: "c")
        #expect(limiter.value.trackedClients == 0)
        // A busy client stays tracked (and limited).
        let busy = Ref(RateLimiter(rate: 1, burst: 2, maxClients: 10))
        #expect(busy.value.allow(client: "x", now: 0) == true)
        #expect(busy.value.allow(client: "x", now: 0) == true)
        #expect(busy.value.allow(client: "x", now: 0.5) == false)
        busy.value.forgetIdle(now: 0.5)
        #expect(busy.value.trackedClients == 1)
        #expect(busy.value.allow(client: "x", now: 0.6) == false)
    }

    @Test("sessions: touch, expire after the lease, remove")
    func sessions() {
        let s = Ref(ClientSessions())
        s.value.touch("a", now: 0)
        s.value.touch("b", now: 5)
        s.value.touch("c", now: 1)
        #expect(s.value.expired(now: 10, lease: 10).isEmpty)
        #expect(s.value.expired(now: 11.5, lease: 10) == ["a", "c"])
        #expect(s.value.clients == ["b"])
        s.value.touch("b", now: 12)
        #expect(s.value.lastSeen("b") == 12)
        #expect(s.value.expired(now: 20, lease: 10).isEmpty)
        #expect(s.value.remove("b") == true)
        #expect(s.value.remove("b") == false)
        #expect(s.value.count == 0)
    }
}
