package membership

import (
	pubsub "github.com/libp2p/go-libp2p-pubsub"
)

// Topics are the gossipsub topics of membership, under a cluster's
// namespace ns: Peers ("ns/peers"), which every peer hears, and Joins
// ("ns/peers/joins"), which the writers alone hear. In a ring of more
// than RingPeers members a peer's first announcement after it starts —
// its join — goes to Joins (Announcements.Joins): each announcement on
// Peers costs every peer a check, and a thousand joins would cost a
// thousand-peer ring a million.
type Topics struct {
	Peers, Joins *pubsub.Topic
}

// JoinTopics joins both topics on ps, each with its own Validator and
// score (nil: none).
func JoinTopics(ps *pubsub.PubSub, ns string, score *pubsub.TopicScoreParams) (Topics, error) {
	var t Topics
	for _, one := range []struct {
		name string
		to   **pubsub.Topic
	}{{ns + "/peers", &t.Peers}, {ns + "/peers/joins", &t.Joins}} {
		if err := ps.RegisterTopicValidator(one.name, (&Validator{}).Validate); err != nil {
			return t, err
		}
		topic, err := ps.Join(one.name)
		if err != nil {
			return t, err
		}
		if score != nil {
			if err := topic.SetScoreParams(score); err != nil {
				return t, err
			}
		}
		*one.to = topic
	}
	return t, nil
}
