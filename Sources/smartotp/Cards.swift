import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: its ICU data would be most of the package
#else
import Foundation
#endif
import Glibc
import SmartCard
import PCSC
import SmartOTPAuth
import SmartOTPSystem

struct CardStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "card-status",
        abstract: "Show each reader and whether a card is in it (no waiting).",
        discussion: "Prints 'present READER' or 'empty READER' per reader. Exit 1 when pcscd is not running.")
    @Option(help: "Only readers whose name contains this text.") var reader: String?

    func run() throws {
        do {
            let context = try PCSCContext()
            let names = try context.readers(matching: reader)
            if names.isEmpty { print("no readers") }
            for name in names {
                print("\(context.cardPresent(in: name) ? "present" : "empty") \(name)")
            }
        } catch {
            throw Failure("\(error)")
        }
    }
}
