import Foundation

/// Renders an HTML file with headless Chromium (Debian's `chromium`, installed by scripts/setup.sh) and saves a
/// PNG screenshot: proof that a browser can draw what a test generated.
public enum Chromium {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// The browser, or nil when it is not installed.
    public static var executable: String? {
        for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        where FileManager.default.isExecutableFile(atPath: candidate) {
            return candidate
        }
        return nil
    }

    /// Screenshots `htmlFile` into `pngFile` at `width`×`height` and returns the PNG's bytes.
    ///
    /// Async and polling, like the CLI harness: a thread blocked in `waitUntilExit` or on a pipe would take one of
    /// the few cooperative threads from every other test's in-process servers. Its stderr goes to a file, not a
    /// pipe, so helper processes Chromium leaves behind cannot hold the read open.
    public static func screenshot(htmlFile: String, pngFile: String, width: Int = 1200, height: Int = 900) async throws -> [UInt8] {
        guard let executable else { throw Failure(description: "chromium is not installed: run scripts/setup.sh") }
        // Its own profile directory, so tests running at once do not share a profile lock.
        let scratch = NSTemporaryDirectory() + "fledge-chromium-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let errorFile = scratch + "/stderr.txt"
        _ = FileManager.default.createFile(atPath: errorFile, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
            "--user-data-dir=\(scratch)/profile", "--screenshot=\(pngFile)", "--window-size=\(width),\(height)",
            URL(fileURLWithPath: htmlFile).absoluteString,
        ]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: errorFile))
        try process.run()
        func stderr() -> String {
            String(decoding: (FileManager.default.contents(atPath: errorFile) ?? Data()).suffix(2000), as: UTF8.self)
        }
        // A browser that hangs must not hang the suite: stopped after two minutes.
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while process.isRunning {
            if ContinuousClock.now > deadline {
                process.terminate()
                throw Failure(description: "chromium did not finish within 120 s: \(stderr())")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        guard process.terminationStatus == 0 else {
            throw Failure(description: "chromium exited with \(process.terminationStatus): \(stderr())")
        }
        guard let data = FileManager.default.contents(atPath: pngFile) else {
            throw Failure(description: "chromium wrote no \(pngFile): \(stderr())")
        }
        return Array(data)
    }

    /// Whether `bytes` start with the PNG signature and hold an IHDR of `width`×`height`.
    public static func isPNG(_ bytes: [UInt8], width: Int, height: Int) -> Bool {
        guard bytes.count > 24, bytes.prefix(8) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { return false }
        func be32(_ at: Int) -> Int { bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } }
        return be32(16) == width && be32(20) == height
    }
}
