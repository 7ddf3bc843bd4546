import FledgeJSON

/// The defaults a real API server writes into every pod spec it stores (a Pod's, and a Deployment's or
/// ReplicaSet's pod template): clients read back more than they wrote, as on a cluster. A controller that compares
/// what it wrote with what it reads must allow for them — the sandbox makes that visible in tests.
extension SandboxStore {
    static func defaultedPodSpec(_ spec: JSONValue) -> JSONValue {
        guard case .object = spec else { return spec }
        var spec = spec
        func setIfAbsent(_ key: String, _ value: JSONValue) { if spec[key] == nil { spec[key] = value } }
        setIfAbsent("restartPolicy", "Always")
        setIfAbsent("terminationGracePeriodSeconds", 30)
        setIfAbsent("dnsPolicy", "ClusterFirst")
        setIfAbsent("securityContext", .object([:]))
        setIfAbsent("schedulerName", "default-scheduler")
        for key in ["containers", "initContainers"] {
            if let containers = spec[key]?.arrayValue { spec[key] = .array(containers.map(defaultedContainer)) }
        }
        if let volumes = spec["volumes"]?.arrayValue {
            spec["volumes"] = .array(volumes.map { volume in
                var volume = volume
                for source in ["configMap", "secret"] where volume[path: [source]] != nil {
                    if volume[path: [source, "defaultMode"]] == nil { volume[path: [source, "defaultMode"]] = 420 }
                }
                return volume
            })
        }
        return spec
    }

    private static func defaultedContainer(_ container: JSONValue) -> JSONValue {
        guard case .object = container else { return container }
        var container = container
        if container["terminationMessagePath"] == nil { container["terminationMessagePath"] = "/dev/termination-log" }
        if container["terminationMessagePolicy"] == nil { container["terminationMessagePolicy"] = "File" }
        if container["imagePullPolicy"] == nil, let image = container["image"]?.stringValue {
            container["imagePullPolicy"] = .string(pullsAlways(image) ? "Always" : "IfNotPresent")
        }
        if container["resources"] == nil { container["resources"] = .object([:]) }
        if let ports = container["ports"]?.arrayValue {
            container["ports"] = .array(ports.map { port in
                var port = port
                if case .object = port, port["protocol"] == nil { port["protocol"] = "TCP" }
                return port
            })
        }
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            guard case .object = container[probe] ?? .null else { continue }
            for (field, value) in [("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1), ("failureThreshold", 3)]
            where container[path: [probe, field]] == nil {
                container[path: [probe, field]] = .int(Int64(value))
            }
            if container[path: [probe, "httpGet"]] != nil, container[path: [probe, "httpGet", "scheme"]] == nil {
                container[path: [probe, "httpGet", "scheme"]] = "HTTP"
            }
        }
        return container
    }

    /// An image without a tag, or tagged `latest`, is pulled every time; one with another tag or a digest only
    /// when absent.
    private static func pullsAlways(_ image: String) -> Bool {
        if image.contains("@") { return false }
        let lastPart = image.split(separator: "/").last.map(String.init) ?? image
        guard let colon = lastPart.lastIndex(of: ":") else { return true }
        return lastPart[lastPart.index(after: colon)...] == "latest"
    }
}
