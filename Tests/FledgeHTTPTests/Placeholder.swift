// FledgeHTTPTests
