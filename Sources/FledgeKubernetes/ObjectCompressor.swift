import CZlib

/// Deflates a watch cache's serialized objects against a preset dictionary made of a few objects of the same kind.
///
/// Objects of one resource share most of their bytes (field names, defaults, images, label keys, condition
/// texts), and deflate alone cannot use that on objects of one or two kilobytes: it has no history to refer back
/// to. Seeded with sample objects, it refers back into them, so each object keeps little more than what is its
/// own (name, uid, timestamps). 10,000 Rollouts and their objects then fit the controller's memory budget.
///
/// Immutable after creation; every stored object keeps a reference to the compressor that deflated it, so a
/// cache never inflates with a different dictionary.
final class ObjectCompressor: Sendable {
    /// Deflate's window is 2^windowBits bytes: the dictionary must fit in it, with zlib's lookahead to spare.
    static let windowBits: Int32 = 13
    static let maximumDictionary = (1 << 13) - 512
    private static let memoryLevel: Int32 = 6
    private static let level: Int32 = 6

    let dictionary: [UInt8]

    init(dictionary: [UInt8]) {
        self.dictionary = Array(dictionary.suffix(Self.maximumDictionary))
    }

    /// A dictionary from up to `limit` objects spread over `samples`: deflate finds matches best near the end of
    /// its window, so the samples are laid end to end and only the last `maximumDictionary` bytes are kept.
    convenience init(samples: [[UInt8]], limit: Int = 3) {
        var dictionary: [UInt8] = []
        if !samples.isEmpty {
            let step = max(1, samples.count / limit)
            for index in stride(from: 0, to: samples.count, by: step).prefix(limit) {
                dictionary.append(contentsOf: samples[index])
            }
        }
        self.init(dictionary: dictionary)
    }

    /// The original size (4 bytes, little-endian), then the raw deflate of `input` against the dictionary, in an
    /// array of exactly that size; nil if zlib fails (then the caller keeps the bytes as they are).
    func deflate(_ input: [UInt8]) -> [UInt8]? {
        guard input.count <= UInt32.max else { return nil }
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        guard fledge_deflate_init_raw(stream, Self.level, Self.windowBits, Self.memoryLevel) == Z_OK else { return nil }
        defer { deflateEnd(stream) }
        if !dictionary.isEmpty {
            let status = dictionary.withUnsafeBufferPointer { deflateSetDictionary(stream, $0.baseAddress, uInt($0.count)) }
            guard status == Z_OK else { return nil }
        }
        let bound = Int(deflateBound(stream, uLong(input.count)))
        guard bound <= UInt32.max else { return nil }
        var output = [UInt8](repeating: 0, count: bound)
        let status = input.withUnsafeBufferPointer { Self.finish(stream, from: $0, into: &output, with: CZlib.deflate) }
        guard status == Z_STREAM_END else { return nil }
        // A copy of exactly the compressed size: the bound-sized buffer would keep its slack.
        let count = UInt32(input.count)
        var stored = [UInt8]()
        stored.reserveCapacity(4 + Int(stream.pointee.total_out))
        stored.append(contentsOf: [UInt8(count & 0xff), UInt8(count >> 8 & 0xff), UInt8(count >> 16 & 0xff), UInt8(count >> 24)])
        stored.append(contentsOf: output[0..<Int(stream.pointee.total_out)])
        return stored
    }

    /// Inflates what `deflate` produced back into the original bytes; nil if they do not come back whole.
    func inflate(_ stored: [UInt8]) -> [UInt8]? {
        guard stored.count >= 4 else { return nil }
        let count = Int(stored[0]) | Int(stored[1]) << 8 | Int(stored[2]) << 16 | Int(stored[3]) << 24
        let input = stored[4...]
        let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
        stream.initialize(to: z_stream())
        defer { stream.deallocate() }
        guard fledge_inflate_init_raw(stream, Self.windowBits) == Z_OK else { return nil }
        defer { inflateEnd(stream) }
        if !dictionary.isEmpty {
            let status = dictionary.withUnsafeBufferPointer { inflateSetDictionary(stream, $0.baseAddress, uInt($0.count)) }
            guard status == Z_OK else { return nil }
        }
        var output = [UInt8](repeating: 0, count: count)
        let status = input.withUnsafeBufferPointer { Self.finish(stream, from: $0, into: &output, with: CZlib.inflate) }
        guard status == Z_STREAM_END, Int(stream.pointee.total_out) == count else { return nil }
        return output
    }

    /// Points `stream` at all of `source` and `output`, and runs `call` (deflate or inflate) to the end.
    private static func finish(
        _ stream: UnsafeMutablePointer<z_stream>, from source: UnsafeBufferPointer<UInt8>, into output: inout [UInt8],
        with call: (UnsafeMutablePointer<z_stream>, Int32) -> Int32
    ) -> Int32 {
        output.withUnsafeMutableBufferPointer { target in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: source.baseAddress)
            stream.pointee.avail_in = uInt(source.count)
            stream.pointee.next_out = target.baseAddress
            stream.pointee.avail_out = uInt(target.count)
            return call(stream, Z_FINISH)
        }
    }
}
