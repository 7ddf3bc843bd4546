import FledgeHTTP
import FledgeJSON
import FledgeSandbox
import Foundation

/// A started sandbox plus an HTTP client pointed at it; `finish()` stops both.
struct Harness {
    let server: SandboxServer
    let url: String
    let client: CurlHTTPClient
    let token: String?

    static func start(_ configuration: SandboxServer.Configuration = .init(), token: String? = nil, caPEM: String? = nil)
        async throws -> Harness
    {
        let server = SandboxServer(configuration: configuration)
        let url = try await server.start()
        var clientConfiguration = HTTPClientConfiguration()
        if let caPEM { clientConfiguration.tls.certificateAuthority = .pem(Array(caPEM.utf8)) }
        let client = CurlHTTPClient(configuration: clientConfiguration)
        return Harness(server: server, url: url.absoluteString, client: client, token: token)
    }

    func finish() async {
        await server.stop()
    }

    func request(
        _ method: HTTPMethod, _ path: String, body: JSONValue? = nil, contentType: String = "application/json",
        token: String? = nil, accept: String = "application/json"
    ) async throws -> (status: Int, json: JSONValue) {
        var headers: HTTPHeaders = ["Accept": accept]
        if let token = token ?? self.token { headers.set("Authorization", "Bearer \(token)") }
        if body != nil { headers.set("Content-Type", contentType) }
        let response = try await client.send(
            HTTPRequest(method: method, url: url + path, headers: headers, body: body.map { $0.serialized() }))
        let json = response.body.isEmpty ? JSONValue.null : try JSONValue(parsing: response.body)
        return (response.status, json)
    }

    func raw(_ method: HTTPMethod, _ path: String, body: String, contentType: String) async throws -> (status: Int, json: JSONValue) {
        var headers: HTTPHeaders = ["Accept": "application/json", "Content-Type": contentType]
        if let token { headers.set("Authorization", "Bearer \(token)") }
        let response = try await client.send(HTTPRequest(method: method, url: url + path, headers: headers, body: Array(body.utf8)))
        return (response.status, try JSONValue(parsing: response.body))
    }

    /// Opens a watch and returns its stream of parsed events.
    func watch(_ path: String) async throws -> AsyncThrowingStream<[UInt8], any Error> {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if let token { headers.set("Authorization", "Bearer \(token)") }
        return try await client.stream(HTTPRequest(method: .get, url: url + path, headers: headers, timeout: .zero)).lines
    }
}

func yaml(_ text: String) throws -> [JSONValue] { try ManifestLoader.parseYAML(text) }

let deploymentJSON: JSONValue = [
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": ["name": "product-service", "labels": ["app": "product-service"]],
    "spec": [
        "replicas": 3,
        "selector": ["matchLabels": ["app": "product-service", "version": "v1"]],
        "template": [
            "metadata": ["labels": ["app": "product-service", "version": "v1"]],
            "spec": ["containers": [["name": "app", "image": "registry.example/product-service:1.0.0"]]],
        ],
    ],
]

/// The seed article's VirtualService and DestinationRule (indentation restored).
let seedIstioYAML = """
    apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata:
      name: product-service
    spec:
      hosts:
      - product-service
      http:
      - match:
        - headers:
            x-canary:
              exact: "true"
        route:
        - destination:
            host: product-service
            subset: canary
      - route:
        - destination:
            host: product-service
            subset: stable
          weight: 90
        - destination:
            host: product-service
            subset: canary
          weight: 10
        retries:
          attempts: 3
          perTryTimeout: 2s
        timeout: 10s
    ---
    apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata:
      name: product-service
    spec:
      host: product-service
      trafficPolicy:
        connectionPool:
          http:
            h2UpgradePolicy: UPGRADE
        outlierDetection:
          consecutive5xxErrors: 3
          interval: 30s
          baseEjectionTime: 60s
      subsets:
      - name: stable
        labels:
          version: v1
      - name: canary
        labels:
          version: v2

    """

let testCRDYAML = """
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.test.fledge.dev
    spec:
      group: test.fledge.dev
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wg]}
      versions:
      - name: v1
        served: true
        storage: true
        subresources: {status: {}}
        additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Phase, type: string, jsonPath: .status.phase}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties:
                  size: {type: integer, minimum: 0, maximum: 10}
                  color: {type: string, enum: [red, blue]}
              status:
                type: object
                properties:
                  phase: {type: string}

    """

/// Runs `body` against a fresh sandbox and stops it afterwards, also when `body` throws.
func withSandbox(
    _ configuration: SandboxServer.Configuration = .init(), token: String? = nil, caPEM: String? = nil,
    _ body: (Harness) async throws -> Void
) async throws {
    let harness = try await Harness.start(configuration, token: token, caPEM: caPEM)
    do {
        try await body(harness)
    } catch {
        await harness.finish()
        throw error
    }
    await harness.finish()
}
