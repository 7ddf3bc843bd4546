import FledgeCLI

await Fledge.main()
