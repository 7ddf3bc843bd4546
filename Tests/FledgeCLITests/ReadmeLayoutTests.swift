import Foundation
import Testing

/// The README's Layout and the architecture's table of targets name every source module (the README lacked CZlib,
/// FledgeReport and FledgeYAML, the architecture FledgeReport).
@Suite("README layout")
struct ReadmeLayoutTests {
    @Test func everySourceFolderIsListed() throws {
        let readme = try String(contentsOf: packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let layout = try #require(readme.range(of: "## Layout")).upperBound
        let listed = readme[layout...]
        let folders = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("Sources").path)
        for folder in folders.sorted() {
            #expect(listed.contains("\nSources/\(folder) "), "README's Layout does not list Sources/\(folder)")
        }
    }

    @Test func everySourceFolderIsInTheArchitecture() throws {
        let architecture = try String(contentsOf: packageRoot.appendingPathComponent("docs/architecture.md"), encoding: .utf8)
        let folders = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("Sources").path)
        for folder in folders.sorted() {
            #expect(architecture.contains("`\(folder)`"), "docs/architecture.md does not name \(folder)")
        }
    }
}
