// FledgeCoreTests
