import Foundation
import LocalPrometheus
import TestSupport
import Testing

@testable import FledgeCLI

/// Files the CLI writes: a missing folder is named in one line before any work, never Foundation's
/// "The operation could not be completed. The file doesn't exist."
@Suite("output files", .serialized)
struct OutputFileTests {
    /// Runs the built binary with no cluster: these checks come before any connection.
    static func run(_ arguments: [String], in folder: URL) async throws -> CLIResult {
        let id = UUID().uuidString
        let running = try RunningCLI.launch(
            try FledgeBinary.path(), arguments,
            environment: ["HOME": folder.path, "PATH": "/usr/bin:/bin", "KUBECONFIG": folder.appendingPathComponent("none.kubeconfig").path],
            out: folder.appendingPathComponent("out-\(id)"), err: folder.appendingPathComponent("err-\(id)"))
        return try await running.finish(orStopAfter: .seconds(60))
    }

    @Test(arguments: [
        (["report", "product-service", "-o"], "--output"),
        (["sandbox", "--no-tls", "--port", "0", "--kubeconfig-out"], "--kubeconfig-out"),
        (["demo", "--kubeconfig-out"], "--kubeconfig-out"),
    ])
    func aMissingFolderIsNamedInOneLine(arguments: [String], flag: String) async throws {
        let folder = URL(fileURLWithPath: try TemporaryDirectory.make(prefix: "fledge-output"))
        defer { try? FileManager.default.removeItem(at: folder) }
        let missing = folder.appendingPathComponent("nope")
        let target = missing.appendingPathComponent("x.out").path
        let result = try await Self.run(arguments + [target], in: folder)
        #expect(result.status != 0, "\(result)")
        #expect(result.errLines.count == 1, "\(result)")
        #expect(
            result.err.contains("\(flag): cannot write \(target): its folder \(missing.path) does not exist"), "\(result)")
        #expect(!result.err.contains("could not be completed"), "\(result)")
        #expect(!FileManager.default.fileExists(atPath: missing.path))
        #expect(result.out.isEmpty, "\(result)")
    }

    @Test func problems() throws {
        let folder = URL(fileURLWithPath: try TemporaryDirectory.make(prefix: "fledge-output"))
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("file").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        #expect(OutputFile.problem(folder.appendingPathComponent("new.html").path) == nil)
        #expect(OutputFile.problem(file) == nil)  // replaced
        #expect(OutputFile.problem(folder.path) == "\(folder.path) is a folder; give a file name")
        #expect(OutputFile.problem(file + "/x.html") == "cannot write \(file)/x.html: \(file) is not a folder")
        #expect(OutputFile.problem("relative-\(UUID().uuidString).html") == nil)
        #expect(throws: CLIError.self) { try OutputFile.write(Data(), to: folder.appendingPathComponent("a/b").path) }
    }
}
