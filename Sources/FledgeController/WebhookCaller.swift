import FledgeCore
import FledgeHTTP
import Foundation
import Logging

/// Calls the Rollout's webhooks (gates and notifications) over the project's libcurl transport.
struct WebhookCaller: Sendable {
    let http: any HTTPClient
    let logger: Logger

    /// Passed when the hook answers 2xx within its timeout; the message keeps the status and the start of the
    /// body, or the transport's error.
    func call(_ call: WebhookCall, now: @Sendable () -> Date) async -> WebhookOutcome {
        var request = HTTPRequest(method: .post, url: call.url, headers: ["Content-Type": "application/json"], body: call.body.serialized())
        request.timeout = .milliseconds(call.timeout.milliseconds)
        do {
            let response = try await http.send(request)
            let excerpt = String(response.bodyText.prefix(200)).trimmingCharacters(in: .whitespacesAndNewlines)
            let message = "\(call.type.rawValue) webhook \(call.name) at \(call.url) answered \(response.status)" + (excerpt.isEmpty ? "" : ": \(excerpt)")
            return WebhookOutcome(passed: response.isSuccess, message: message, time: Timestamp(now()))
        } catch {
            logger.warning("webhook failed", metadata: ["webhook": "\(call.name)", "url": "\(call.url)", "error": "\(error)"])
            return WebhookOutcome(
                passed: false, message: "\(call.type.rawValue) webhook \(call.name) at \(call.url): \(error)", time: Timestamp(now()), answered: false)
        }
    }
}
