import ArgumentParser
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run a real PAM login with the virtual card (see README).")
    func run() throws { throw Failure("not yet") }
}
