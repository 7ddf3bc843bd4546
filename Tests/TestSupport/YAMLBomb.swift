/// A "billion laughs" YAML document: `levels` nested lists of 9 aliases to the level below, so the last stands for
/// 9^(levels+1) strings in a few hundred bytes. The first alias, `*l0`, is at line 6, column 12.
public func yamlBomb(levels: Int, prefix: String = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: laughs}\ndata:\n") -> String {
    var text = prefix + "  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in 1...levels {
        text += "  l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 9).joined(separator: ", ") + "]\n"
    }
    return text
}
