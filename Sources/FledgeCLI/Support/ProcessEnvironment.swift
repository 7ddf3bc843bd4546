import Foundation

enum ProcessEnvironment {
    static subscript(name: String) -> String? { ProcessInfo.processInfo.environment[name] }
}

/// Writes to standard error: diagnostics never mix with machine-readable stdout.
enum StandardError {
    static func write(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// A failure the user can act on, printed as one line without a stack trace.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
