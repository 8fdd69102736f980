from availability.cli import main

main()
