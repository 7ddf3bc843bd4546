import FledgeHTTP
import FledgeJSON
import Foundation
import Testing

@testable import FledgeKubernetes

/// The compact watch cache: objects deflated against a dictionary, lists stored page by page, changes as
/// coalesced keys.
@Suite struct CompactCacheTests {
    static func deployment(_ name: String, image: String = "registry.example/app:1.0.0") -> JSONValue {
        [
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": ["name": .string(name), "namespace": "shop", "uid": .string(UUID().uuidString), "resourceVersion": "7"],
            "spec": [
                "replicas": 2, "selector": ["matchLabels": ["app": .string(name), "version": "v1"]],
                "template": [
                    "metadata": ["labels": ["app": .string(name), "version": "v1"]],
                    "spec": ["containers": [["name": "app", "image": .string(image), "ports": [["containerPort": 8080]]]]],
                ],
            ],
            "status": ["observedGeneration": 1, "replicas": 2, "readyReplicas": 2],
        ]
    }

    @Test func deflatedObjectsComeBackByteForByte() throws {
        let samples = (0..<3).map { Self.deployment("svc-\($0)").serialized() }
        let compressor = ObjectCompressor(samples: samples)
        for object in [Self.deployment("other"), Self.deployment("x", image: "elsewhere/img:9"), ["a": "ü ✓ \u{1F600}"], [:]] as [JSONValue] {
            let bytes = object.serialized()
            let deflated = try #require(compressor.deflate(bytes))
            #expect(compressor.inflate(deflated) == bytes)
        }
        // Larger than deflate's window: still whole.
        let big: JSONValue = ["data": .string(String(repeating: "abcdefghij", count: 5000) + UUID().uuidString)]
        let deflated = try #require(compressor.deflate(big.serialized()))
        #expect(compressor.inflate(deflated) == big.serialized())
        // Damaged input is refused, not mis-read.
        #expect(compressor.inflate(Array(deflated.prefix(3))) == nil)
        #expect(compressor.inflate(Array(deflated.dropLast(5))) == nil)
    }

    @Test func theDictionaryIsWhatMakesSmallObjectsSmall() throws {
        let bytes = Self.deployment("checkout").serialized()
        let plain = try #require(ObjectCompressor(dictionary: []).deflate(bytes))
        let seeded = try #require(ObjectCompressor(samples: [Self.deployment("cart").serialized()]).deflate(bytes))
        // Only the name, the uid and the size prefix are left to store.
        #expect(seeded.count * 3 < plain.count)
        #expect(seeded.count * 5 < bytes.count)
    }

    func informer(compact: Bool = true) -> Informer {
        let client = KubernetesClient(
            configuration: KubernetesConfiguration(server: "http://127.0.0.1:1"),
            transport: ScriptedHTTPClient { _, _ in .response(500, "") })
        return Informer(client: client, resource: .configMaps, compact: compact)
    }

    @Test func aListStoredPageByPageIsCompleteOnlyAtItsEnd_andAFailedOneStartsAgain() async throws {
        let informer = informer()
        informer.apply(.resyncPage(items: [object("a", rv: "1"), object("b", rv: "1")]))
        #expect(!informer.hasSynced)
        #expect(informer.count == 0)
        // The list failed part-way: its pages are dropped, the retried list starts from its first page.
        informer.apply(.failure(KubernetesError(kind: .api, code: 410, reason: "Expired", message: "continue token expired"), retryIn: .zero))
        informer.apply(.resyncPage(items: [object("c", rv: "3")]))
        informer.apply(.resync(items: [object("d", rv: "3")], resourceVersion: "3"))
        #expect(informer.hasSynced)
        #expect(await informer.waitUntilSynced())
        #expect(Set(informer.keys) == ["shop/c", "shop/d"])
        #expect(informer.get(namespace: "shop", name: "c") == object("c", rv: "3"))
        #expect(informer.storedBytes > 0)
    }

    @Test func changedKeysCoalesceBursts() async throws {
        let informer = informer()
        informer.apply(.resync(items: [object("a", rv: "1"), object("b", rv: "1")], resourceVersion: "1"))
        var replay = informer.changedKeys(replayExisting: true).makeAsyncIterator()
        #expect(await replay.next() == ["shop/a": .present, "shop/b": .present])

        var keys = informer.changedKeys().makeAsyncIterator()
        informer.apply(.modified(object("a", rv: "2")))
        informer.apply(.modified(object("a", rv: "3")))
        informer.apply(.deleted(object("b", rv: "4")))
        informer.apply(.added(object("c", rv: "5")))
        informer.apply(.deleted(object("c", rv: "6")))
        #expect(await keys.next() == ["shop/a": .present, "shop/b": .deleted, "shop/c": .deleted])

        // A relist tells only what it changed.
        informer.apply(.resync(items: [object("a", rv: "3"), object("e", rv: "7")], resourceVersion: "7"))
        #expect(await keys.next() == ["shop/e": .present])
        informer.apply(.resync(items: [object("a", rv: "8"), object("e", rv: "7")], resourceVersion: "8"))
        #expect(await keys.next() == ["shop/a": .present])
        #expect(informer.get(namespace: "shop", name: "a") == object("a", rv: "8"))
    }

    /// Fledge is usually installed before the first Rollout: a cache that starts empty must still get a dictionary.
    @Test func aCacheThatStartedEmptyGetsItsDictionaryFromTheFirstObjects() {
        let startedEmpty = informer()
        startedEmpty.apply(.resync(items: [], resourceVersion: "1"))
        let startedFull = informer()
        let items = (0..<20).map { Self.deployment("svc-\($0)") }
        startedFull.apply(.resync(items: [items[0]], resourceVersion: "1"))
        for item in items { startedEmpty.apply(.added(item)) }
        for item in items.dropFirst() { startedFull.apply(.added(item)) }
        #expect(startedEmpty.get(namespace: "shop", name: "svc-7") == items[7])
        #expect(startedEmpty.storedBytes == startedFull.storedBytes)
        #expect(startedEmpty.storedBytes < items.reduce(0) { $0 + $1.serialized().count } / 4)
    }

    /// Rollouts are listed before the controller has written any status, then each gets one: the dictionary is
    /// extended with the first object that has the new field, so the updated objects stay small.
    @Test func theDictionaryLearnsATopLevelFieldThatAppearsLater() {
        func withoutStatus(_ object: JSONValue) -> JSONValue {
            var object = object
            object["status"] = nil
            return object
        }
        func withConditions(_ object: JSONValue) -> JSONValue {
            var object = object
            object["status"] = [
                "phase": "Healthy", "observedGeneration": 1, "stableRevision": "e67131becc555b6d",
                "conditions": [
                    ["type": "Ready", "status": "True", "reason": "Healthy", "message": "the stable revision serves all traffic"],
                    ["type": "TrafficReady", "status": "True", "reason": "Ready", "message": "subsets select ready pods of the target"],
                ],
            ]
            return object
        }
        let items = (0..<20).map { Self.deployment("svc-\($0)") }
        let learning = informer()
        learning.apply(.resync(items: items.map(withoutStatus), resourceVersion: "1"))
        for item in items { learning.apply(.modified(withConditions(item))) }
        let seededWithStatus = informer()
        seededWithStatus.apply(.resync(items: items.map(withConditions), resourceVersion: "1"))
        #expect(learning.get(namespace: "shop", name: "svc-4") == withConditions(items[4]))
        #expect(Double(learning.storedBytes) < Double(seededWithStatus.storedBytes) * 1.25, "\(learning.storedBytes) vs \(seededWithStatus.storedBytes)")

        // Objects that keep bringing new fields (past the few extensions allowed) are still stored whole.
        let fields = informer()
        fields.apply(.resync(items: [withoutStatus(items[0])], resourceVersion: "1"))
        for index in 1..<20 {
            var object = items[index]
            object["field\(index)"] = "x"
            fields.apply(.added(object))
        }
        #expect(fields.count == 20)
        #expect(fields.get(namespace: "shop", name: "svc-19")?["field19"] == "x")
    }

    @Test func aKeyListedTwiceIsCountedOnce() {
        let cache = informer()
        cache.apply(.resync(items: [object("a", rv: "1"), object("a", rv: "2"), object("b", rv: "2")], resourceVersion: "2"))
        #expect(cache.count == 2)
        cache.apply(.deleted(object("a", rv: "3")))
        cache.apply(.deleted(object("b", rv: "4")))
        #expect(cache.count == 0)
    }

    @Test func parsedAndCompactCachesHoldTheSameObjects() {
        let compact = informer()
        let parsed = informer(compact: false)
        let items = (0..<20).map { Self.deployment("svc-\($0)") }
        let modified = Self.deployment("svc-3", image: "registry.example/app:2.0.0")
        for cache in [compact, parsed] {
            cache.apply(.resyncPage(items: Array(items[0..<10])))
            cache.apply(.resync(items: Array(items[10...]), resourceVersion: "7"))
            cache.apply(.modified(modified))
        }
        #expect(compact.get(namespace: "shop", name: "svc-3") == modified)
        #expect(compact.count == 20)
        for i in 0..<20 {
            #expect(compact.get(namespace: "shop", name: "svc-\(i)") == parsed.get(namespace: "shop", name: "svc-\(i)"))
        }
        #expect(parsed.storedBytes == 0)
        #expect(compact.storedBytes < items.reduce(0) { $0 + $1.serialized().count } / 4)
    }
}
