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
    public static func screenshot(htmlFile: String, pngFile: String, width: Int = 1200, height: Int = 900) throws -> [UInt8] {
        guard let executable else { throw Failure(description: "chromium is not installed: run scripts/setup.sh") }
        // Its own profile directory, so tests running at once do not share a profile lock.
        let profile = NSTemporaryDirectory() + "fledge-chromium-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
            "--user-data-dir=\(profile)", "--screenshot=\(pngFile)", "--window-size=\(width),\(height)",
            URL(fileURLWithPath: htmlFile).absoluteString,
        ]
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        // A browser that hangs must not hang the suite: stopped after two minutes.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 120, execute: watchdog)
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "chromium exited with \(process.terminationStatus): \(String(decoding: stderr.suffix(2000), as: UTF8.self))")
        }
        guard let data = FileManager.default.contents(atPath: pngFile) else {
            throw Failure(description: "chromium wrote no \(pngFile): \(String(decoding: stderr.suffix(2000), as: UTF8.self))")
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
