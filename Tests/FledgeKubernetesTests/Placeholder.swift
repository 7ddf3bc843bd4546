// FledgeKubernetesTests
