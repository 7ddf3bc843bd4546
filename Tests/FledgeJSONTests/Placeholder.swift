// FledgeJSONTests
