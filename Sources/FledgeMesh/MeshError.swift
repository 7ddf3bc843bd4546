/// Everything that can go wrong in the mesh simulator: bad configuration, or a
/// server that cannot be started. The message names the field or the cause.
public struct MeshError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A configuration value is out of range (the message names the field).
        case invalidConfiguration
        /// The `/metrics` server could not be started.
        case startup
        /// Another socket holds the `/metrics` port (EADDRINUSE).
        case addressInUse
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
