// FledgeCLITests
