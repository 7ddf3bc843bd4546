import Collections
import Synchronization

/// A de-duplicating queue of rollout keys, as controller-runtime has it: a key waits at most once, a key
/// being reconciled is never handed to a second worker (an add while it runs marks it to run again), and
/// delayed adds keep only the earliest deadline per key.
public final class WorkQueue: Sendable {
    private struct Delayed: Comparable {
        var deadline: ContinuousClock.Instant
        var key: String
        static func < (a: Delayed, b: Delayed) -> Bool { a.deadline < b.deadline }
    }

    private struct State {
        var ready: Deque<String> = []
        var queued: Set<String> = []
        var processing: Set<String> = []
        var dirty: Set<String> = []
        var delayed = Heap<Delayed>()
        /// The deadline each key waits for; a heap entry that disagrees is stale.
        var deadlines: [String: ContinuousClock.Instant] = [:]
        var waiters: Deque<CheckedContinuation<String?, Never>> = []
        var shutDown = false
    }

    private let state = Mutex(State())
    private let clock = ContinuousClock()

    public init() {}

    /// Queues `key` now.
    public func add(_ key: String) {
        let waiter: (CheckedContinuation<String?, Never>, String)? = state.withLock { s in
            guard !s.shutDown else { return nil }
            s.deadlines[key] = nil
            if s.processing.contains(key) {
                s.dirty.insert(key)
                return nil
            }
            guard s.queued.insert(key).inserted else { return nil }
            if let waiter = s.waiters.popFirst() {
                s.queued.remove(key)
                s.processing.insert(key)
                return (waiter, key)
            }
            s.ready.append(key)
            return nil
        }
        if let (continuation, key) = waiter { continuation.resume(returning: key) }
    }

    /// Queues `key` after `delay`; an earlier deadline already set for it wins.
    public func add(_ key: String, after delay: Duration) {
        guard delay > .zero else { return add(key) }
        let deadline = clock.now.advanced(by: delay)
        state.withLock { s in
            guard !s.shutDown else { return }
            if let existing = s.deadlines[key], existing <= deadline { return }
            s.deadlines[key] = deadline
            s.delayed.insert(Delayed(deadline: deadline, key: key))
        }
    }

    /// The next key to reconcile; nil once the queue is shut down. Call `done(_:)` when finished with it.
    public func next() async -> String? {
        await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            let key: String?? = state.withLock { s in
                if s.shutDown { return .some(nil) }
                if let key = s.ready.popFirst() {
                    s.queued.remove(key)
                    s.processing.insert(key)
                    return .some(key)
                }
                s.waiters.append(continuation)
                return .none
            }
            if let key { continuation.resume(returning: key) }
        }
    }

    /// Marks `key` finished; queues it again if it was added while it ran.
    public func done(_ key: String) {
        let again = state.withLock { s in
            s.processing.remove(key)
            return s.dirty.remove(key) != nil
        }
        if again { add(key) }
    }

    /// Drops a key's pending delayed add (the rollout was deleted).
    public func forget(_ key: String) {
        state.withLock { s in s.deadlines[key] = nil }
    }

    /// Moves every key whose deadline passed to the ready queue; returns the next deadline.
    @discardableResult
    public func promoteDue() -> ContinuousClock.Instant? {
        let now = clock.now
        var due: [String] = []
        let next: ContinuousClock.Instant? = state.withLock { s in
            while let top = s.delayed.min, top.deadline <= now {
                _ = s.delayed.popMin()
                if s.deadlines[top.key] == top.deadline {
                    s.deadlines[top.key] = nil
                    due.append(top.key)
                }
            }
            return s.delayed.min?.deadline
        }
        for key in due { add(key) }
        return next
    }

    /// Runs the delayed adds until cancelled, waking at least every `granularity`.
    public func runTimers(granularity: Duration = .milliseconds(50)) async {
        while !Task.isCancelled {
            let next = promoteDue()
            let wake = min(next ?? clock.now.advanced(by: granularity), clock.now.advanced(by: granularity))
            try? await Task.sleep(until: wake, clock: clock)
        }
    }

    /// Wakes every waiting worker with nil; later adds are ignored.
    public func shutDown() {
        let waiters = state.withLock { s in
            s.shutDown = true
            defer { s.waiters.removeAll() }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    /// Keys waiting now (not delayed, not running).
    public var depth: Int { state.withLock { $0.ready.count } }
    /// Keys with a pending delayed add.
    public var delayedCount: Int { state.withLock { $0.deadlines.count } }
}
