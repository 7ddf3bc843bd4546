// FledgePrometheusTests
