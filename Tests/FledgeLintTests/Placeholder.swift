// FledgeLintTests
