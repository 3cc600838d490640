from ltdeploy.cli import main

main()
