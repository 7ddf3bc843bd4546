import Foundation
import Testing

/// The README's Layout lists every source module (it lacked CZlib, FledgeReport and FledgeYAML).
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
}
