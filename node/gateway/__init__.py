"""The web app and its JSON API, with video to browsers over WebRTC (docs/api.md)."""
