// Command tlogcheck verifies an Assay checkpoint and proof with the Go reference
// implementation of signed notes and RFC 6962 proofs (golang.org/x/mod/sumdb/note and
// golang.org/x/mod/sumdb/tlog). It shares no code with Assay on purpose: it is the
// interoperability witness for the end-to-end tests.
//
// Usage:
//
//	tlogcheck [inclusion] <verifier-key> <checkpoint-note-file> <entry-file> <leaf-index> <proof-json-file>
//	tlogcheck consistency <verifier-key> <old-checkpoint-note-file> <new-checkpoint-note-file> <proof-json-file>
//
// <verifier-key> is the key text (name+hash+base64) or @path to a file holding it.
// A proof file is JSON: {"hashes": ["<base64 hash>", ...]}, leaf side first (RFC 9162).
//
// Exit status: 0 when everything verifies, 1 when verification fails, 2 on bad usage or
// unreadable input. The reason is printed to stderr.
package main

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const usage = `usage:
  tlogcheck [inclusion] <verifier-key> <checkpoint-note-file> <entry-file> <leaf-index> <proof-json-file>
  tlogcheck consistency <verifier-key> <old-checkpoint-note-file> <new-checkpoint-note-file> <proof-json-file>`

// usageError marks failures caused by the invocation rather than by the data checked.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	msg, err := run(os.Args[1:])
	if err != nil {
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintf(os.Stderr, "tlogcheck: %v\n%s\n", err, usage)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "tlogcheck: FAIL: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("tlogcheck: OK: %s\n", msg)
}

func run(args []string) (string, error) {
	mode := "inclusion"
	if len(args) > 0 && (args[0] == "inclusion" || args[0] == "consistency") {
		mode, args = args[0], args[1:]
	}
	switch {
	case mode == "inclusion" && len(args) == 5:
		return checkInclusion(args[0], args[1], args[2], args[3], args[4])
	case mode == "consistency" && len(args) == 4:
		return checkConsistency(args[0], args[1], args[2], args[3])
	}
	return "", usageError{fmt.Sprintf("%s mode: wrong number of arguments (%d)", mode, len(args))}
}

func checkInclusion(keyArg, notePath, entryPath, indexArg, proofPath string) (string, error) {
	verifier, err := loadVerifier(keyArg)
	if err != nil {
		return "", err
	}
	cp, err := openCheckpoint(notePath, verifier)
	if err != nil {
		return "", err
	}
	entry, err := os.ReadFile(entryPath)
	if err != nil {
		return "", usageError{fmt.Sprintf("reading entry file: %v", err)}
	}
	index, err := strconv.ParseInt(indexArg, 10, 64)
	if err != nil || index < 0 {
		return "", usageError{fmt.Sprintf("leaf index %q is not a non-negative decimal integer", indexArg)}
	}
	if index >= cp.size {
		return "", fmt.Errorf("leaf index %d is outside the checkpoint's tree of size %d", index, cp.size)
	}
	proof, err := loadProof(proofPath)
	if err != nil {
		return "", err
	}
	leaf := tlog.RecordHash(entry)
	if err := tlog.CheckRecord(tlog.RecordProof(proof), cp.size, cp.root, index, leaf); err != nil {
		return "", fmt.Errorf("inclusion proof (%d hashes) of leaf %d (leaf hash %x) does not lead to root %s of size %d: %v",
			len(proof), index, leaf[:], cp.root, cp.size, err)
	}
	return fmt.Sprintf("note signed by %s; checkpoint %q size %d root %s; leaf %d is included",
		verifier.Name(), cp.origin, cp.size, cp.root, index), nil
}

func checkConsistency(keyArg, oldPath, newPath, proofPath string) (string, error) {
	verifier, err := loadVerifier(keyArg)
	if err != nil {
		return "", err
	}
	oldCp, err := openCheckpoint(oldPath, verifier)
	if err != nil {
		return "", fmt.Errorf("old checkpoint: %v", err)
	}
	newCp, err := openCheckpoint(newPath, verifier)
	if err != nil {
		return "", fmt.Errorf("new checkpoint: %v", err)
	}
	if oldCp.origin != newCp.origin {
		return "", fmt.Errorf("checkpoints are from different logs: %q and %q", oldCp.origin, newCp.origin)
	}
	if oldCp.size > newCp.size {
		return "", fmt.Errorf("old checkpoint size %d is larger than new size %d", oldCp.size, newCp.size)
	}
	proof, err := loadProof(proofPath)
	if err != nil {
		return "", err
	}
	if err := tlog.CheckTree(tlog.TreeProof(proof), newCp.size, newCp.root, oldCp.size, oldCp.root); err != nil {
		return "", fmt.Errorf("consistency proof (%d hashes) from size %d root %s to size %d root %s fails: %v",
			len(proof), oldCp.size, oldCp.root, newCp.size, newCp.root, err)
	}
	return fmt.Sprintf("notes signed by %s; checkpoint %q size %d is a prefix of size %d",
		verifier.Name(), newCp.origin, oldCp.size, newCp.size), nil
}

func loadVerifier(keyArg string) (note.Verifier, error) {
	key := keyArg
	if strings.HasPrefix(keyArg, "@") {
		data, err := os.ReadFile(keyArg[1:])
		if err != nil {
			return nil, usageError{fmt.Sprintf("reading verifier key file: %v", err)}
		}
		key = strings.TrimSpace(string(data))
	}
	v, err := note.NewVerifier(key)
	if err != nil {
		return nil, usageError{fmt.Sprintf("verifier key %q: %v", key, err)}
	}
	return v, nil
}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

// openCheckpoint verifies the note's signature and parses a C2SP tlog-checkpoint body:
// origin line, decimal tree size, base64 root hash, then optional extension lines.
func openCheckpoint(path string, verifier note.Verifier) (checkpoint, error) {
	var cp checkpoint
	msg, err := os.ReadFile(path)
	if err != nil {
		return cp, usageError{fmt.Sprintf("reading checkpoint note: %v", err)}
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		return cp, fmt.Errorf("note %s does not verify with key %s: %v", path, verifier.Name(), err)
	}
	lines := strings.SplitAfter(n.Text, "\n")
	if len(lines) < 4 { // SplitAfter leaves a final "" after the last newline
		return cp, fmt.Errorf("checkpoint body has %d lines, want at least 3 (origin, size, root)", len(lines)-1)
	}
	cp.origin = strings.TrimSuffix(lines[0], "\n")
	if cp.origin == "" {
		return cp, errors.New("checkpoint origin line is empty")
	}
	sizeText := strings.TrimSuffix(lines[1], "\n")
	cp.size, err = strconv.ParseInt(sizeText, 10, 64)
	if err != nil || cp.size < 0 || strconv.FormatInt(cp.size, 10) != sizeText {
		return cp, fmt.Errorf("checkpoint size line %q is not a canonical non-negative decimal", sizeText)
	}
	rootText := strings.TrimSuffix(lines[2], "\n")
	root, err := base64.StdEncoding.DecodeString(rootText)
	if err != nil || len(root) != tlog.HashSize {
		return cp, fmt.Errorf("checkpoint root line %q is not a base64 %d-byte hash", rootText, tlog.HashSize)
	}
	copy(cp.root[:], root)
	return cp, nil
}

func loadProof(path string) ([]tlog.Hash, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Sprintf("reading proof file: %v", err)}
	}
	var doc struct {
		Hashes *[]string `json:"hashes"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, usageError{fmt.Sprintf("proof file %s is not JSON: %v", path, err)}
	}
	if doc.Hashes == nil {
		return nil, usageError{fmt.Sprintf(`proof file %s has no "hashes" array`, path)}
	}
	proof := make([]tlog.Hash, len(*doc.Hashes))
	for i, text := range *doc.Hashes {
		raw, err := base64.StdEncoding.DecodeString(text)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("proof hash %d (%q) is not a base64 %d-byte hash", i, text, tlog.HashSize)
		}
		copy(proof[i][:], raw)
	}
	return proof, nil
}
