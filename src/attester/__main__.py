from attester.cli import main

main()
