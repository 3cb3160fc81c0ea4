import ArgumentParser

@main
struct Quiver: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quiver",
        abstract: "Quiver: an interactive molecular dynamics engine and server.",
        subcommands: [Run.self, Stop.self, Status.self, Watch.self, Cmd.self, Pull.self, Bench.self, Info.self, Worker.self, Debug.self])
}
