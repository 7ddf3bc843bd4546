import Foundation

/// Files the CLI writes (`report -o`, `sandbox --kubeconfig-out`, `demo --kubeconfig-out`): checked before any work,
/// and a failed write named by path and cause rather than Foundation's "The file doesn't exist."
enum OutputFile {
    /// What stops a file being written at `path` (the folder missing, not a folder, not writable; the path itself a
    /// folder), or nil when nothing visible does.
    static func problem(_ path: String) -> String? {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        if manager.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            return "\(path) is a folder; give a file name"
        }
        let absolute = URL(fileURLWithPath: path).standardizedFileURL
        let folder = absolute.deletingLastPathComponent().path
        if !manager.fileExists(atPath: folder, isDirectory: &isFolder) {
            return "cannot write \(path): its folder \(folder) does not exist (create it first, or choose another path)"
        }
        if !isFolder.boolValue {
            return "cannot write \(path): \(folder) is not a folder"
        }
        if !manager.isWritableFile(atPath: folder) {
            return "cannot write \(path): the folder \(folder) is not writable"
        }
        return nil
    }

    /// Writes `data` to `path` atomically; a failure is one line naming the path and why.
    static func write(_ data: Data, to path: String) throws {
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw CLIError(problem(path) ?? "cannot write \(path): \(reason(error))")
        }
    }

    /// The operating system's reason inside a Foundation file error, when it carries one.
    static func reason(_ error: any Error) -> String {
        let error = error as NSError
        if let underlying = error.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return error.localizedDescription
    }
}
