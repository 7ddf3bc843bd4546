import ArgumentParser
import FledgeCore
import FledgeJSON
import FledgeKubernetes
import Foundation

/// `fledge trigger ROLLOUT --image [CONTAINER=]IMAGE ... | --template-patch FILE`: starts a rollout by writing
/// `spec.canary`, and prints the revision it starts.
struct TriggerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trigger",
        abstract: "Start a rollout: write the canary change into the Rollout's spec.canary.",
        discussion: """
            Replaces spec.canary (its replicas are kept) with the images and/or the template patch given, and prints \
            the revision the controller will roll out: the same hash the controller computes from the stable \
            Deployment's pod template with the change applied.

            A --template-patch is checked with a server-side dry run of the stable Deployment carrying the new pod \
            template, so a template the API server would refuse is refused now, with its message, and nothing is \
            written (not checked where RBAC does not allow patching Deployments).

            Refuses while another revision is in flight (phase neither Healthy, Succeeded, Failed nor Aborted), \
            naming it, unless --force: the controller then moves traffic back to stable and starts the new revision \
            (or, when spec.canary is back to what stable runs, only cancels the one in flight).

              fledge trigger product-service -n shop \\
                --image registry.example/product-service:2.0.0
              fledge trigger product-service \\
                --image app=reg/app:2 --image sidecar=reg/proxy:1.3
              fledge trigger product-service --template-patch patch.yaml
              fledge trigger product-service --image reg/app:2 \\
                && fledge status product-service --watch

            Exit status: 0 written (the revision is printed), 1 refused (another revision in flight) or error, \
            \(usageErrorExit).
            """)

    @Argument(help: "The Rollout's name.")
    var rollout: String

    @Option(help: ArgumentHelp("A canary image, [CONTAINER=]IMAGE (repeatable; CONTAINER may be an init container; without CONTAINER the pod must have one container).", valueName: "image"))
    var image: [String] = []

    @Option(help: ArgumentHelp("A JSON merge patch over the pod template, in a YAML or JSON file; applied before --image.", valueName: "file"))
    var templatePatch: String?

    @Flag(help: "Replace a revision that is in flight.")
    var force = false

    @OptionGroup var kubernetes: KubernetesOptions

    func validate() throws {
        try validateRolloutName(rollout)
        if image.isEmpty, templatePatch == nil { throw ValidationError("give --image [CONTAINER=]IMAGE or --template-patch FILE") }
        var parsed: [ImageChange] = []
        for text in image {
            do {
                parsed.append(try ImageChange(parsing: text))
            } catch {
                throw ValidationError("--image: \(error.message)")
            }
        }
        if parsed.count > 1, parsed.contains(where: { $0.container == nil }) {
            throw ValidationError("--image: with several images, each needs a container name: CONTAINER=IMAGE")
        }
        let containers = parsed.compactMap(\.container)
        if let twice = containers.first(where: { name in containers.filter { $0 == name }.count > 1 }) {
            throw ValidationError("--image: container '\(twice)' is given twice")
        }
        if let templatePatch {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: templatePatch, isDirectory: &isFolder) else {
                throw ValidationError("--template-patch: \(templatePatch): no such file")
            }
            guard !isFolder.boolValue else { throw ValidationError("--template-patch: \(templatePatch) is a directory, not a YAML or JSON file") }
            guard FileManager.default.isReadableFile(atPath: templatePatch) else {
                throw ValidationError("--template-patch: cannot read \(templatePatch) (permission denied)")
            }
        }
    }

    /// The new `spec.canary`: the images and patch given, `replicas` kept from the current one.
    func canary(replacing current: JSONValue?) throws(CLIError) -> JSONValue {
        var canary = JSONObject()
        if image.count == 1 { canary["image"] = .string(image[0]) }
        if image.count > 1 { canary["images"] = .array(image.map(JSONValue.string)) }
        if let templatePatch {
            // A device or a pipe (/dev/null, <(…)) is read as a stream, as lint reads it: FileManager gives nil there,
            // and String(contentsOfFile:) said "You don't have permission" for /dev/null.
            guard
                let data = FileManager.default.contents(atPath: templatePatch)
                    ?? FileHandle(forReadingAtPath: templatePatch).flatMap({ try? $0.readToEnd() ?? Data() })
            else {
                throw CLIError("--template-patch: cannot read \(templatePatch)")
            }
            guard let text = String(data: data, encoding: .utf8) else { throw CLIError("--template-patch: \(templatePatch) is not UTF-8 text") }
            let patch: JSONValue
            do {
                patch = try YAML.parse(text, source: templatePatch)
            } catch {
                // Empty, or comments only: no patch at all is a mistake worth naming (spec.canary would only lose its image).
                throw CLIError("--template-patch: \(error.message)\(text.contains(where: { !$0.isWhitespace }) ? "" : " (the file is empty)")")
            }
            guard case .object = patch else {
                throw CLIError("--template-patch: \(templatePatch) holds \(patch.typeNameWithArticle); expected an object (a JSON merge patch over the pod template)")
            }
            canary["templatePatch"] = patch
        }
        if let replicas = current?["replicas"], !replicas.isNull { canary["replicas"] = replicas }
        return .object(canary)
    }

    /// A template patch can make a pod template the API server refuses (a container without an image, a bad
    /// port), which would surface only once the controller tries to create the canary. Asked first with a
    /// server-side dry run of the stable Deployment carrying the canary's template (what promotion writes into it),
    /// the server's own validation and admission answer now, and nothing is written. Who may not patch Deployments,
    /// or a server that cannot be asked, is not checked here: the controller reports it as before.
    func checkTemplate(_ cluster: Cluster, plan: RolloutPlan, observed: Observed, patchFile: String) async throws {
        let (stable, effective) = try CoreBridge.templates(plan: plan, observed: observed, namespace: cluster.namespace)
        let patch = JSONValue.object(["spec": .object(["template": stable.mergePatch(to: effective)])])
        do {
            _ = try await cluster.client.patch(
                .deployments, namespace: cluster.namespace, name: plan.target, .merge(patch), fieldManager: "fledge-cli", dryRun: true)
        } catch let error where error.isInvalid {
            throw CLIError(
                "--template-patch: \(patchFile) makes a pod template the API server refuses: \(error.message) (checked with a server-side dry run of Deployment \(plan.target); nothing was changed)")
        } catch {
            return
        }
    }

    func run() async throws {
        let cluster = try kubernetes.connect()
        // The check and the write are one step: the patch carries the resourceVersion that was checked.
        for _ in 0..<5 {
            let fetched = try await cluster.rollout(rollout)
            try fetched.requireNotDeleting("trigger")
            let current = fetched.object[path: ["spec", "canary"]]
            let canary = try canary(replacing: current)
            var changed = fetched.object
            changed[path: ["spec", "canary"]] = canary
            let planned = try CoreBridge.plan(try FetchedRollout(changed).rollout)

            var revision: (revision: String, stableRevision: String)?
            if let observed = await cluster.observed(for: fetched.rollout) {
                revision = try CoreBridge.revision(plan: planned, observed: observed, namespace: cluster.namespace)
                if let templatePatch {
                    try await checkTemplate(cluster, plan: planned, observed: observed, patchFile: templatePatch)
                }
            }
            let status = fetched.status
            func hint(_ subcommand: String) -> String { kubernetes.suggestion(subcommand, rollout, namespace: cluster.namespace) }
            // The revision --force replaces, to say so when it is done.
            var replaced: String?
            if let wanted = revision?.revision, !status.phase.isIdle, let inFlight = status.revision {
                if inFlight == wanted {
                    print("revision \(wanted) is already in flight (\(status.phase.rawValue)); nothing to do")
                    return
                }
                if !force {
                    throw CLIError(
                        "revision \(inFlight) of rollout \"\(rollout)\" is in flight (\(StatusView.phaseSummary(status, stages: planned.stages.count))); wait for it, abort it (\(hint("abort"))), or pass --force to replace it with \(wanted)")
                }
                replaced = inFlight
            } else if let wanted = revision?.revision, status.revision == wanted, [.failed, .aborted].contains(status.phase), fetched.statusIsCurrent {
                // The controller does not start an ended revision again by itself.
                throw CLIError(
                    "revision \(wanted) of rollout \"\(rollout)\" ended \(status.phase.rawValue); `\(hint("retry"))` runs it again")
            } else if revision == nil, !status.phase.isIdle, !force {
                throw CLIError("revision \(status.revision ?? "?") of rollout \"\(rollout)\" is in flight (\(status.phase.rawValue)); pass --force to replace it")
            }
            // One JSON Patch: the resourceVersion checked above is the write's precondition (409 when stale), and
            // spec.canary is replaced whole (a merge patch would merge an old template patch into the new one).
            var operations: [JSONPatchOperation] = [.add(path: "/spec/canary", value: canary)]
            if let version = fetched.resourceVersion {
                operations.insert(.replace(path: "/metadata/resourceVersion", value: .string(version)), at: 0)
            }
            let patch = Patch.json(operations)
            do {
                try await write(cluster, patch)
            } catch let error as KubernetesError where error.isConflict {
                continue  // someone else changed the Rollout between the check and the write: check again
            }
            let subject = "rollout \"\(rollout)\" in namespace \"\(cluster.namespace)\""
            if let revision {
                let unchanged = revision.revision == revision.stableRevision
                switch (unchanged, replaced) {
                case (true, let replaced?) where [.initializing, .progressing, .paused].contains(status.phase):
                    // decide: spec.canary back to stable mid-rollout rolls the canary back (CanaryReverted) and ends Healthy.
                    print(
                        "\(subject): spec.canary now matches the stable Deployment (revision \(revision.revision)), so revision \(replaced) in flight (\(status.phase.rawValue)) is cancelled: the controller moves traffic back to stable and removes the canary")
                case (true, let replaced?):
                    print(
                        "\(subject): spec.canary now matches the stable Deployment (revision \(revision.revision)); revision \(replaced) was \(status.phase.rawValue): see \(hint("status"))")
                case (true, nil):
                    print("\(subject): revision \(revision.revision) is what the stable Deployment runs; nothing to roll out")
                case (false, let replaced?):
                    print(
                        "\(subject) triggered: revision \(revision.revision) replaces revision \(replaced) in flight (\(status.phase.rawValue)): traffic back to stable, then it starts over (stable runs \(revision.stableRevision))")
                case (false, nil):
                    print("\(subject) triggered: revision \(revision.revision) (stable runs \(revision.stableRevision))")
                }
            } else {
                // Without read access to the Deployment and DestinationRule the revision is the controller's to compute.
                print("\(subject) triggered (revision not known: cannot read Deployment \(planned.target) and DestinationRule \(planned.traffic.destinationRule); see \(hint("status")))")
            }
            return
        }
        throw CLIError("rollout \"\(rollout)\" kept changing while it was being triggered; try again")
    }

    private func write(_ cluster: Cluster, _ patch: Patch) async throws {
        do {
            _ = try await cluster.client.patch(.rollouts, namespace: cluster.namespace, name: rollout, patch, fieldManager: "fledge-cli")
        } catch where error.isConflict {
            throw error
        } catch {
            throw cluster.failure(error, rollout: rollout)
        }
    }
}
