// FledgeSandboxTests
